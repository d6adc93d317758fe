"""The secret vault: every password, token and API key of surplus, encrypted at rest.

One JSON file (``secrets.vault``, mode 0600), rewritten atomically on every change::

    {
      "format": "surplus-vault",
      "version": 1,
      "kdf": {"name": "key-file"}
          or {"name": "scrypt", "salt": "<base64, 16 bytes>", "n": 32768, "r": 8, "p": 1},
      "check": {"nonce": "<base64, 12 bytes>", "ciphertext": "<base64>"},
      "entries": {"<name>": {"nonce": "<base64, 12 bytes>", "ciphertext": "<base64>"}, ...}
    }

Each entry is sealed on its own with AES-256-GCM under a fresh 96-bit nonce, with
``entry:<name>`` as associated data so a ciphertext moved under another name fails to open.
``check`` seals an empty value under ``check``: it tells a wrong key or passphrase apart from
a tampered entry before anything is read or written. The key is either 32 random bytes in a
0600 key file (created on first run) or derived from a passphrase with scrypt.

Every failure is a ``VaultError`` that names the file (and the entry) and says what to do, and
leaves the vault file and the key file byte-for-byte as they were.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import json
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from surplus.domain.errors import VaultError
from surplus.security.redact import MASK, SecretFilter

__all__ = ["DEFAULT_SCRYPT_N", "Secret", "Vault"]

FORMAT = "surplus-vault"
VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12
SALT_BYTES = 16
DEFAULT_SCRYPT_N = 2**15  # 32 MiB and about 0.1 s on a desktop, a second or so on a small board
_SCRYPT_R = 8
_SCRYPT_P = 1
_MAX_SCRYPT_N = 2**20  # a tampered header must not make us allocate gigabytes
_CHECK_AAD = b"check"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127}")


@final
class Secret:
    """A secret string that never shows itself: not in ``repr``, ``str``, f-strings or pickles.

    ``reveal()`` is the one way to the value. Equal secrets compare equal in constant time.
    """

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"a Secret wraps a str, not {type(value).__name__}")
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    __hash__ = None  # type: ignore[assignment]  # a hash would be a cheap oracle on the value

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("a Secret is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("a Secret is immutable")

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled; keep it in the Vault")

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Secret:
        return self


@dataclass(frozen=True)
class _Sealed:
    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True)
class _ScryptParams:
    salt: bytes
    n: int
    r: int
    p: int


@dataclass(frozen=True)
class _Envelope:
    kdf: _ScryptParams | None  # None: the key is in a key file
    check: _Sealed
    entries: dict[str, _Sealed]


class Vault:
    """An open vault. Reads decrypt one entry; writes replace the file atomically."""

    def __init__(self, path: Path, aead: AESGCM, envelope: _Envelope) -> None:
        """Use ``Vault.open``."""
        self._path = path
        self._aead = aead
        self._envelope = envelope
        self._filters: list[SecretFilter] = []

    @classmethod
    def open(
        cls,
        path: Path | str,
        *,
        key_file: Path | str | None = None,
        passphrase: str | Secret | None = None,
        scrypt_n: int = DEFAULT_SCRYPT_N,
    ) -> Vault:
        """Open the vault at ``path``, creating it (and its key file) when it does not exist.

        Give exactly one of ``key_file`` and ``passphrase``. ``scrypt_n`` is the scrypt cost
        of a *new* passphrase vault (a power of two); an existing vault keeps its own.
        """
        path = Path(path)
        # The vault is read and checked first: a broken vault never gets a new key file.
        envelope = _read_envelope(path) if path.exists() else None
        if key_file is not None and passphrase is None:
            key_path = Path(key_file)
            key, kdf = _key_from_file(path, key_path, envelope), None
            wrong = (
                f"cannot be opened with the key file {key_path}: wrong key;"
                " use the key file it was created with"
            )
        elif passphrase is not None and key_file is None:
            key, kdf = _key_from_passphrase(path, passphrase, envelope, scrypt_n)
            wrong = "wrong passphrase; open it with the passphrase it was created with"
        else:
            raise ValueError("give exactly one of key_file and passphrase")

        aead = AESGCM(key)
        if envelope is None:
            envelope = _Envelope(kdf, _seal(aead, _CHECK_AAD, b""), {})
            vault = cls(path, aead, envelope)
            vault._save(envelope)
            return vault
        try:
            _open(aead, envelope.check, _CHECK_AAD)
        except InvalidTag:
            raise VaultError(path, wrong) from None
        return cls(path, aead, envelope)

    @property
    def path(self) -> Path:
        return self._path

    def names(self) -> list[str]:
        """The names of the stored secrets, sorted."""
        return sorted(self._envelope.entries)

    def get(self, name: str) -> Secret:
        sealed = self._envelope.entries.get(name)
        if sealed is None:
            raise VaultError(
                self._path,
                f"no such entry; store it with: surplus secret set {name} --config <file>",
                name,
            )
        try:
            return Secret(_open(self._aead, sealed, _entry_aad(name)).decode())
        except InvalidTag:
            raise VaultError(
                self._path,
                "fails its integrity check (tampered with or corrupted); restore the vault from"
                " a backup, or delete the entry and set it again",
                name,
            ) from None

    def set(self, name: str, value: str | Secret) -> None:
        """Store (or overwrite) a secret; attached filters redact it from then on."""
        _check_name(name)
        plain = value.reveal() if isinstance(value, Secret) else value
        sealed = _seal(self._aead, _entry_aad(name), _utf8(plain, "the value"))
        latest = self._latest()
        self._save(_Envelope(latest.kdf, latest.check, {**latest.entries, name: sealed}))
        for f in self._filters:
            f.add(plain)

    def delete(self, name: str) -> None:
        latest = self._latest()
        if name not in latest.entries:
            raise VaultError(self._path, "no such entry to delete", name)
        entries = {k: v for k, v in latest.entries.items() if k != name}
        self._save(_Envelope(latest.kdf, latest.check, entries))

    def secret_values(self) -> frozenset[str]:
        """Every stored value, revealed: only for feeding a ``SecretFilter``."""
        return frozenset(self.get(name).reveal() for name in self._envelope.entries)

    def attach(self, secret_filter: SecretFilter) -> None:
        """Make ``secret_filter`` redact every stored value, and every value set from now on."""
        secret_filter.add(*self.secret_values())
        self._filters.append(secret_filter)

    def __repr__(self) -> str:
        return f"Vault({str(self._path)!r}, {len(self._envelope.entries)} entries)"

    def _latest(self) -> _Envelope:
        """The vault as it is on disk now: another process (``surplus secret set`` beside the
        running service) may have changed it since it was opened, and a write must keep
        what it added."""
        if not self._path.exists():
            return self._envelope
        on_disk = _read_envelope(self._path)
        try:
            _open(self._aead, on_disk.check, _CHECK_AAD)
        except InvalidTag:
            raise VaultError(
                self._path, "was replaced by a vault with another key since it was opened"
            ) from None
        return on_disk

    def _save(self, envelope: _Envelope) -> None:
        """Write ``envelope`` atomically; only then does this object take it on."""
        data = json.dumps(_encode(envelope), indent=2, sort_keys=True) + "\n"
        try:
            _write_atomic(self._path, data.encode())
        except OSError as e:
            raise VaultError(
                self._path, f"cannot be written ({e.strerror or e}); it is unchanged"
            ) from e
        self._envelope = envelope


def _entry_aad(name: str) -> bytes:
    return b"entry:" + name.encode()


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"invalid secret name {name!r}: 1-128 letters, digits and _.:@/- "
            "starting with a letter or digit"
        )


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:
        # the codec's message would quote the offending characters of the secret
        raise ValueError(f"{what} is not valid text (it holds a lone surrogate)") from None


def _seal(aead: AESGCM, aad: bytes, plain: bytes) -> _Sealed:
    nonce = os.urandom(NONCE_BYTES)
    return _Sealed(nonce, aead.encrypt(nonce, plain, aad))


def _open(aead: AESGCM, sealed: _Sealed, aad: bytes) -> bytes:
    return aead.decrypt(sealed.nonce, sealed.ciphertext, aad)


# --- keys ---


def _key_from_file(vault: Path, path: Path, envelope: _Envelope | None) -> bytes:
    if envelope is not None and envelope.kdf is not None:
        raise VaultError(vault, "is protected by a passphrase; open it with the passphrase")
    if not path.exists():
        if envelope is not None:
            raise VaultError(
                path,
                f"missing, but the vault {vault} exists; restore this key file from a backup"
                " (a new key could not decrypt the vault)",
            )
        _create_key_file(path)
    return _read_key_file(path)


def _key_from_passphrase(
    vault: Path, passphrase: str | Secret, envelope: _Envelope | None, scrypt_n: int
) -> tuple[bytes, _ScryptParams]:
    phrase = passphrase.reveal() if isinstance(passphrase, Secret) else passphrase
    if not phrase:
        raise ValueError("the passphrase is empty")
    if envelope is None:
        if not _valid_scrypt_n(scrypt_n):
            raise ValueError(f"scrypt_n={scrypt_n} is not a power of two up to {_MAX_SCRYPT_N}")
        kdf = _ScryptParams(os.urandom(SALT_BYTES), scrypt_n, _SCRYPT_R, _SCRYPT_P)
    elif envelope.kdf is None:
        raise VaultError(vault, "is protected by a key file; open it with its key file")
    else:
        kdf = envelope.kdf
    scrypt = Scrypt(salt=kdf.salt, length=KEY_BYTES, n=kdf.n, r=kdf.r, p=kdf.p)
    return scrypt.derive(_utf8(phrase, "the passphrase")), kdf


def _valid_scrypt_n(n: int) -> bool:
    return 2 <= n <= _MAX_SCRYPT_N and n & (n - 1) == 0


def _create_key_file(path: Path) -> None:
    # Written in place, not through a temp file: the key is created before the vault, so a
    # torn key file can only ever meet an empty vault, and O_EXCL never clobbers a key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, os.urandom(KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_dir(path.parent)
    except OSError as e:
        raise VaultError(path, f"cannot create the key file ({e.strerror or e})") from e


def _read_key_file(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            info = os.fstat(fd)
            key = os.read(fd, KEY_BYTES + 1) if stat.S_ISREG(info.st_mode) else b""
        finally:
            os.close(fd)
    except OSError as e:
        raise VaultError(path, f"cannot read the key file ({e.strerror or e})") from e
    if not stat.S_ISREG(info.st_mode):
        raise VaultError(path, "the key file is not a regular file; restore it from a backup")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise VaultError(path, f"permissions {mode:04o} are wider than 0600; run chmod 600 {path}")
    if len(key) != KEY_BYTES:
        raise VaultError(
            path, f"a key file holds exactly {KEY_BYTES} bytes; restore the right one from a backup"
        )
    return key


# --- the file ---


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _encode(envelope: _Envelope) -> dict[str, Any]:
    kdf: dict[str, Any] = {"name": "key-file"}
    if envelope.kdf is not None:
        s = envelope.kdf
        kdf = {"name": "scrypt", "salt": _b64(s.salt), "n": s.n, "r": s.r, "p": s.p}
    return {
        "format": FORMAT,
        "version": VERSION,
        "kdf": kdf,
        "check": _encode_sealed(envelope.check),
        "entries": {name: _encode_sealed(s) for name, s in envelope.entries.items()},
    }


def _encode_sealed(sealed: _Sealed) -> dict[str, str]:
    return {"nonce": _b64(sealed.nonce), "ciphertext": _b64(sealed.ciphertext)}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class _Malformed(Exception):
    """A structural problem in the vault file; becomes a ``VaultError`` naming the file."""


def _read_envelope(path: Path) -> _Envelope:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise VaultError(path, f"cannot be read ({e.strerror or e})") from e
    restore = "restore it from a backup"
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise VaultError(path, f"is not a vault (truncated or not JSON); {restore}") from None
    try:
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise _Malformed("is not a surplus vault")
        version = doc.get("version")
        if version != VERSION:
            raise VaultError(
                path,
                f"has format version {version!r}, this surplus reads version {VERSION};"
                " upgrade surplus or restore a backup",
            )
        kdf_doc = _dict(doc, "kdf")
        match kdf_doc.get("name"):
            case "key-file":
                kdf = None
            case "scrypt":
                kdf = _ScryptParams(
                    _bytes(kdf_doc, "salt", SALT_BYTES),
                    _int(kdf_doc, "n"),
                    _int(kdf_doc, "r"),
                    _int(kdf_doc, "p"),
                )
                if not (_valid_scrypt_n(kdf.n) and 1 <= kdf.r <= 32 and 1 <= kdf.p <= 16):
                    raise _Malformed("has unusable scrypt parameters")
            case other:
                raise _Malformed(f"has an unknown key derivation {other!r}")
        entries_doc = _dict(doc, "entries")
        entries: dict[str, _Sealed] = {}
        for name in entries_doc:
            try:
                _check_name(name)
            except ValueError:
                raise _Malformed(f"holds an entry with an invalid name {name!r}") from None
            entries[name] = _sealed(entries_doc, name)
        return _Envelope(kdf, _sealed(doc, "check"), entries)
    except _Malformed as e:
        raise VaultError(path, f"{e}; {restore}") from None


def _dict(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise _Malformed(f"lacks the object {key!r}")
    return value


def _int(doc: dict[str, Any], key: str) -> int:
    value = doc.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Malformed(f"lacks the integer {key!r}")
    return value


def _bytes(doc: dict[str, Any], key: str, size: int | None = None) -> bytes:
    value = doc.get(key)
    try:
        data = base64.b64decode(value, validate=True) if isinstance(value, str) else None
    except binascii.Error:
        data = None
    if data is None or (size is not None and len(data) != size):
        raise _Malformed(f"has a bad {key!r} field")
    return data


def _sealed(doc: dict[str, Any], key: str) -> _Sealed:
    box = _dict(doc, key)
    ciphertext = _bytes(box, "ciphertext")
    if len(ciphertext) < 16:  # shorter than a GCM tag
        raise _Malformed(f"has a truncated ciphertext in {key!r}")
    return _Sealed(_bytes(box, "nonce", NONCE_BYTES), ciphertext)
