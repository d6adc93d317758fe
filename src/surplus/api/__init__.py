"""The service's HTTP API (read-only for now): the live state and the recorded history."""
