"""All async I/O of the service: pollers, the control loop, the supervisor."""
