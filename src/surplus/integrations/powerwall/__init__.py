"""Tesla Powerwall 2 local gateway: wire models, an async client and a faithful simulator.

Import ``client`` and ``models`` from here; ``simulator`` only from tests and the ``sim``
command.
"""
