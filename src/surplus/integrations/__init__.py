"""Device integrations: one package per device family.

Each package holds the wire models of its protocol, a client that speaks only that protocol,
and a simulator beside it that shares the wire models, so a renamed field breaks both at once.
Nothing outside ``sim``, ``bench``, the tests and the ``demo``/``sim`` commands imports a
simulator.
"""
