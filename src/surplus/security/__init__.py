"""Secrets at rest and in flight: the encrypted vault, the ``Secret`` wrapper and redaction."""
