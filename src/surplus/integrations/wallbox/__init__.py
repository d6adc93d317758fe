"""Wallbox chargers through the Wallbox cloud API: a simulator of both cloud hosts, a
rate-limited client, the ``SteeredCharger`` adapter and its config."""
