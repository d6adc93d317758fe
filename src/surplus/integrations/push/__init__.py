"""Charge HQ's push API, received: scripts that push a site's meters to surplus.

A script written for Charge HQ (``POST /api/public/push-solar-data`` with the ``apiKey`` in
the JSON body) works unchanged against surplus's receiver. ``models`` holds the payload and
its conversion into a ``PushedReading``, ``receiver`` the HTTP routes, and ``simulator`` a
simulated pushing site (for ``surplus sim push-sender`` and the tests only).
"""
