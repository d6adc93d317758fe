"""The one error tree of surplus.

    SurplusError
     +-- ConfigError            bad settings; names the key path (``loadpoints[0].min_current_a``)
     +-- DataFileError          a malformed input file; names the file and the line
     +-- VaultError             the secret vault cannot be used; names the file (and the entry)
     +-- DeviceError            anything a device or cloud did to us
          +-- UnavailableError      back off, mark the readings stale
          +-- AuthenticationError   stop, surface "needs re-authentication"
          +-- NotSupportedError     drop the capability
          +-- RateLimitedError      honour ``retry_after_s``
          +-- AsleepError           decide whether waking is worth it
     +-- StoreError             the embedded store cannot be used; names the database file

Each boundary raises one of these ``from`` the original error, so a caller handles a branch
(the runtime's reaction) and never a library's exception type.
"""

from __future__ import annotations

from pathlib import Path


class SurplusError(Exception):
    """Root of every error surplus raises on purpose."""


class ConfigError(SurplusError):
    """Settings that cannot be used; ``problems`` holds (key path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        where = f"{source}: " if source else ""
        lines = [f"{where}{path}: {message}" for path, message in problems]
        super().__init__("\n".join(lines))


class DataFileError(SurplusError):
    """A data file (weather, prices) that cannot be read; names the file and the line."""

    def __init__(self, path: Path | str, message: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class VaultError(SurplusError):
    """The secret vault or its key cannot be used; names the file, the entry where it applies,
    and what to do. Never carries a secret value.
    """

    def __init__(self, path: Path | str, message: str, entry: str | None = None) -> None:
        self.path = str(path)
        self.entry = entry
        self.message = message
        where = f"{self.path}: entry {entry!r}" if entry is not None else self.path
        super().__init__(f"{where}: {message}")


class DeviceError(SurplusError):
    """Something a device or a vendor cloud did."""


class UnavailableError(DeviceError):
    """The device did not answer usefully; back off and mark its readings stale."""


class AuthenticationError(DeviceError):
    """Credentials were refused; stop retrying and ask the owner to re-authenticate."""


class NotSupportedError(DeviceError):
    """The device cannot do this; drop the capability."""


class RateLimitedError(DeviceError):
    """Too many calls; wait ``retry_after_s`` before the next one."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


class AsleepError(DeviceError):
    """The vehicle is asleep; waking it costs battery and API budget."""


class StoreError(SurplusError):
    """The embedded store cannot do what was asked; names the database file."""

    def __init__(self, path: Path | str, message: str) -> None:
        self.path = str(path)
        self.message = message
        super().__init__(f"{self.path}: {message}")
