"""The simulated world: solar, household load, home battery, EV, grid and plug-in patterns."""
