"""The pure control engine: no asyncio, no sockets, no wall clock; time comes in as `now`."""
