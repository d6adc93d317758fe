"""Replay of real data: the surplus controller against baselines and the annual LP optimum."""
