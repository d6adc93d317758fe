"""OCPP 1.6J: surplus's central system for chargers, and a simulated charger to test it.

- ``central``: the central system (``running_central_system``, ``CentralSystem``), one port
  per security profile; ``session`` answers each charger, ``control`` commands it
  (``ChargerHandle``), ``state`` is what surplus reads of it, ``watchdog`` its health.
- ``ca`` and ``tls``: surplus's own CA for client certificates, and the TLS contexts.
- ``chargepoint_sim``: a charger on the network, with every fault of reference C.6 as a
  switch (``quirks``); ``sim_charger`` is what it does (car, transactions, meter values),
  ``sim_link`` how it answers, ``sim_model`` its hardware, ``sim_profiles`` its smart
  charging, ``sim_config`` its configuration and ``sim_queue`` its offline queue.

Built on the mobilityhouse ``ocpp`` library (through ``_lib``) over ``websockets``.
"""
