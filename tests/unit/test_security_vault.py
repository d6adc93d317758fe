"""The secret vault: encrypted at rest, atomic writes, clear errors that change nothing, and
secrets kept out of reprs, exceptions and logs."""

from __future__ import annotations

import base64
import copy
import io
import json
import logging
import os
import pickle
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from surplus.domain.errors import VaultError
from surplus.security import vault as vault_module
from surplus.security.redact import MASK, SecretFilter, redact
from surplus.security.vault import Secret, Vault

SECRETS = {
    "octopus.api_key": "sk_live_9f8e7d6c5b4a39281706f5e4d3c2b1a0",
    "tesla.refresh_token": "eyJhbGciOiJSUzI1NiJ9.tesla-refresh-0123456789abcdef",
    "mqtt/password": "correct horse battery staple ✓",
}
FAST = 2**10  # scrypt cost for tests only


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def new_vault(tmp_path: Path) -> Vault:
    vault = Vault.open(tmp_path / "secrets.vault", key_file=tmp_path / "vault.key")
    for name, value in SECRETS.items():
        vault.set(name, value)
    return vault


def entry(path: Path, name: str) -> dict[str, str]:
    box: dict[str, str] = json.loads(path.read_text())["entries"][name]
    return box


def rewrite(path: Path, edit: Callable[[dict[str, object]], None]) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


@pytest.fixture
def no_umask() -> Iterator[None]:
    """Modes must not rely on a strict umask."""
    old = os.umask(0)
    yield
    os.umask(old)


# round trip and modes


def test_secrets_survive_a_reopen_with_the_key_file(tmp_path: Path) -> None:
    new_vault(tmp_path)
    again = Vault.open(tmp_path / "secrets.vault", key_file=tmp_path / "vault.key")
    assert again.names() == sorted(SECRETS)
    assert {name: again.get(name).reveal() for name in again.names()} == SECRETS


def test_secrets_survive_a_reopen_with_the_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "secrets.vault"
    vault = Vault.open(path, passphrase="hunter2 but longer", scrypt_n=FAST)
    for name, value in SECRETS.items():
        vault.set(name, value)
    again = Vault.open(path, passphrase=Secret("hunter2 but longer"))
    assert {name: again.get(name).reveal() for name in again.names()} == SECRETS
    assert [p.name for p in tmp_path.iterdir()] == ["secrets.vault"]


@pytest.mark.usefixtures("no_umask")
def test_the_vault_and_the_key_file_are_0600(tmp_path: Path) -> None:
    vault = new_vault(tmp_path)
    assert mode(tmp_path / "vault.key") == 0o600
    assert mode(tmp_path / "secrets.vault") == 0o600
    assert (tmp_path / "vault.key").stat().st_size == 32
    vault.delete("mqtt/password")
    assert mode(tmp_path / "secrets.vault") == 0o600


def test_no_file_holds_a_secret_in_plain_text(tmp_path: Path) -> None:
    new_vault(tmp_path)
    Vault.open(tmp_path / "other.vault", passphrase="pass phrase", scrypt_n=FAST).set(
        "octopus.api_key", SECRETS["octopus.api_key"]
    )
    contents = files(tmp_path)
    assert set(contents) == {"secrets.vault", "vault.key", "other.vault"}
    for value in SECRETS.values():
        raw = value.encode()
        forms = [raw, base64.b64encode(raw), base64.urlsafe_b64encode(raw), raw.hex().encode()]
        forms += [f.rstrip(b"=")[:24] for f in forms[1:3]]
        for name, data in contents.items():
            for form in forms:
                assert form not in data, (name, form)


def test_each_write_uses_a_fresh_nonce(tmp_path: Path) -> None:
    vault = new_vault(tmp_path)
    before = entry(vault.path, "octopus.api_key")
    vault.set("octopus.api_key", SECRETS["octopus.api_key"])
    after = entry(vault.path, "octopus.api_key")
    assert before["nonce"] != after["nonce"]
    assert before["ciphertext"] != after["ciphertext"]


# names, delete, overwrite


def test_names_delete_and_overwrite(tmp_path: Path) -> None:
    vault = new_vault(tmp_path)
    vault.set("octopus.api_key", Secret("sk_live_rotated"))
    vault.delete("tesla.refresh_token")
    assert vault.names() == ["mqtt/password", "octopus.api_key"]
    again = Vault.open(vault.path, key_file=tmp_path / "vault.key")
    assert again.names() == ["mqtt/password", "octopus.api_key"]
    assert again.get("octopus.api_key") == Secret("sk_live_rotated")
    with pytest.raises(VaultError, match=r"secrets\.vault: entry 'tesla\.refresh_token'"):
        again.get("tesla.refresh_token")
    with pytest.raises(VaultError, match=r"tesla\.refresh_token"):
        again.delete("tesla.refresh_token")


def test_a_new_vault_is_empty_and_written_at_once(tmp_path: Path) -> None:
    vault = Vault.open(tmp_path / "secrets.vault", key_file=tmp_path / "vault.key")
    assert vault.names() == []
    assert (tmp_path / "secrets.vault").exists()
    assert Vault.open(tmp_path / "secrets.vault", key_file=tmp_path / "vault.key").names() == []


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"key_file": "k", "passphrase": "p"}, {"passphrase": ""}],
)
def test_exactly_one_usable_key_source(tmp_path: Path, kwargs: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        Vault.open(tmp_path / "secrets.vault", **kwargs)  # type: ignore[arg-type]
    assert files(tmp_path) == {}


@pytest.mark.parametrize("name", ["", "has space", "new\nline", "x" * 129, "-leading"])
def test_bad_names_are_refused(tmp_path: Path, name: str) -> None:
    vault = new_vault(tmp_path)
    before = files(tmp_path)
    with pytest.raises(ValueError, match="invalid secret name"):
        vault.set(name, "value")
    assert files(tmp_path) == before


# every failure is a VaultError naming the file, and changes no byte


def _missing_key(tmp: Path) -> None:
    (tmp / "vault.key").unlink()


def _wrong_key(tmp: Path) -> None:
    (tmp / "vault.key").write_bytes(os.urandom(32))


def _short_key(tmp: Path) -> None:
    (tmp / "vault.key").write_bytes(os.urandom(31))


def _open_key(tmp: Path) -> None:
    (tmp / "vault.key").chmod(0o644)


def _truncated(tmp: Path) -> None:
    data = (tmp / "secrets.vault").read_bytes()
    (tmp / "secrets.vault").write_bytes(data[: len(data) // 2])


def _empty(tmp: Path) -> None:
    (tmp / "secrets.vault").write_bytes(b"")


def _not_json(tmp: Path) -> None:
    (tmp / "secrets.vault").write_bytes(b"\x00\xffnot a vault")


def _future_version(tmp: Path) -> None:
    rewrite(tmp / "secrets.vault", lambda doc: doc.update(version=2))


def _tampered_check(tmp: Path) -> None:
    def edit(doc: dict[str, object]) -> None:
        box = doc["check"]
        assert isinstance(box, dict)
        box["ciphertext"] = base64.b64encode(os.urandom(16)).decode()

    rewrite(tmp / "secrets.vault", edit)


@pytest.mark.parametrize(
    ("damage", "named", "says"),
    [
        (_missing_key, "vault.key", "restore this key file"),
        (_wrong_key, "secrets.vault", "wrong key"),
        (_tampered_check, "secrets.vault", "wrong key"),
        (_short_key, "vault.key", "exactly 32 bytes"),
        (_open_key, "vault.key", "chmod 600"),
        (_truncated, "secrets.vault", "truncated"),
        (_empty, "secrets.vault", "truncated"),
        (_not_json, "secrets.vault", "not JSON"),
        (_future_version, "secrets.vault", "version 2"),
    ],
)
def test_a_key_file_failure_is_clear_and_changes_nothing(
    tmp_path: Path, damage: Callable[[Path], None], named: str, says: str
) -> None:
    new_vault(tmp_path)
    damage(tmp_path)
    before = files(tmp_path)
    with pytest.raises(VaultError, match=says) as caught:
        Vault.open(tmp_path / "secrets.vault", key_file=tmp_path / "vault.key")
    assert str(tmp_path / named) in str(caught.value)
    assert caught.value.path == str(tmp_path / named)
    assert files(tmp_path) == before
    for value in SECRETS.values():
        assert value not in str(caught.value)


def test_a_wrong_passphrase_is_clear_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "secrets.vault"
    Vault.open(path, passphrase="right", scrypt_n=FAST).set("octopus.api_key", "sk_live_x")
    before = files(tmp_path)
    with pytest.raises(VaultError, match="wrong passphrase") as caught:
        Vault.open(path, passphrase="wrong")
    assert str(path) in str(caught.value)
    with pytest.raises(VaultError, match="open it with the passphrase"):
        Vault.open(path, key_file=tmp_path / "vault.key")
    assert files(tmp_path) == before


def test_a_key_file_vault_refuses_a_passphrase(tmp_path: Path) -> None:
    new_vault(tmp_path)
    before = files(tmp_path)
    with pytest.raises(VaultError, match="open it with its key file"):
        Vault.open(tmp_path / "secrets.vault", passphrase="anything")
    assert files(tmp_path) == before


def test_a_tampered_entry_is_clear_and_changes_nothing(tmp_path: Path) -> None:
    path = new_vault(tmp_path).path

    def flip(doc: dict[str, object]) -> None:
        entries = doc["entries"]
        assert isinstance(entries, dict)
        data = bytearray(base64.b64decode(entries["tesla.refresh_token"]["ciphertext"]))
        data[3] ^= 0x01
        entries["tesla.refresh_token"]["ciphertext"] = base64.b64encode(data).decode()

    rewrite(path, flip)
    before = files(tmp_path)
    vault = Vault.open(path, key_file=tmp_path / "vault.key")
    assert vault.get("octopus.api_key").reveal() == SECRETS["octopus.api_key"]
    with pytest.raises(VaultError, match="integrity check") as caught:
        vault.get("tesla.refresh_token")
    assert caught.value.entry == "tesla.refresh_token"
    assert str(path) in str(caught.value)
    assert "'tesla.refresh_token'" in str(caught.value)
    with pytest.raises(VaultError, match=r"tesla\.refresh_token"):
        vault.secret_values()
    assert files(tmp_path) == before


def test_an_entry_cannot_be_moved_under_another_name(tmp_path: Path) -> None:
    path = new_vault(tmp_path).path

    def swap(doc: dict[str, object]) -> None:
        entries = doc["entries"]
        assert isinstance(entries, dict)
        entries["octopus.api_key"], entries["mqtt/password"] = (
            entries["mqtt/password"],
            entries["octopus.api_key"],
        )

    rewrite(path, swap)
    vault = Vault.open(path, key_file=tmp_path / "vault.key")
    for name in ("octopus.api_key", "mqtt/password"):
        with pytest.raises(VaultError, match="integrity check"):
            vault.get(name)
    assert vault.get("tesla.refresh_token").reveal() == SECRETS["tesla.refresh_token"]


def test_a_key_file_is_never_made_for_an_existing_vault(tmp_path: Path) -> None:
    new_vault(tmp_path)
    (tmp_path / "vault.key").unlink()
    for _ in range(2):
        with pytest.raises(VaultError, match="missing"):
            Vault.open(tmp_path / "secrets.vault", key_file=tmp_path / "vault.key")
    assert not (tmp_path / "vault.key").exists()


def test_an_interrupted_write_keeps_the_old_vault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = new_vault(tmp_path)
    before = files(tmp_path)

    def crash(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(vault_module.os, "replace", crash)
    with pytest.raises(VaultError, match="No space left") as caught:
        vault.set("octopus.api_key", "sk_live_new")
    assert "sk_live_new" not in str(caught.value)
    with pytest.raises(VaultError):
        vault.delete("mqtt/password")
    monkeypatch.undo()

    assert files(tmp_path) == before  # no temp file left either
    assert vault.names() == sorted(SECRETS)
    assert vault.get("octopus.api_key").reveal() == SECRETS["octopus.api_key"]
    again = Vault.open(vault.path, key_file=tmp_path / "vault.key")
    assert again.get("octopus.api_key").reveal() == SECRETS["octopus.api_key"]


# Secret


def test_a_secret_never_shows_its_value() -> None:
    value = "sk_live_do_not_print"
    secret = Secret(value)
    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{secret:>40}"]
    shown += [repr([secret]), repr({"k": secret}), str(ValueError(secret))]
    for text in shown:
        assert value not in text
        assert MASK in text
    assert repr(secret) == "Secret('********')"
    assert secret.reveal() == value


def test_a_secret_cannot_be_pickled_or_changed() -> None:
    secret = Secret("sk_live_do_not_pickle")
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError) as caught:
            pickle.dumps(secret, protocol=protocol)
        assert "sk_live" not in str(caught.value)
    with pytest.raises(AttributeError):
        secret._value = "other"  # type: ignore[misc]
    assert copy.deepcopy(secret).reveal() == "sk_live_do_not_pickle"


def test_secrets_compare_by_value() -> None:
    assert Secret("a✓") == Secret("a✓")
    assert Secret("a") != Secret("b")
    assert Secret("a") != "a"
    with pytest.raises(TypeError):
        hash(Secret("a"))


def test_a_secret_with_a_lone_surrogate_is_refused_without_showing_it(tmp_path: Path) -> None:
    vault = new_vault(tmp_path)
    with pytest.raises(ValueError) as caught:
        vault.set("bad", "pw\udcff")
    assert "pw" not in str(caught.value)
    assert "udcff" not in str(caught.value)


# redaction


def test_redact_replaces_the_longest_secret_first() -> None:
    text = "token=abcdef, short=abc, star=*"
    assert redact(text, ["abc", "", "abcdef", "*"]) == f"token={MASK}, short={MASK}, star={MASK}"
    assert redact("nothing here", []) == "nothing here"


@pytest.fixture
def log() -> Iterator[tuple[logging.Logger, io.StringIO, SecretFilter]]:
    logger = logging.getLogger("surplus.test.vault")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    secret_filter = SecretFilter()
    handler.addFilter(secret_filter)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield logger, out, secret_filter
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)


def test_the_log_filter_redacts_arguments_messages_and_exceptions(
    tmp_path: Path, log: tuple[logging.Logger, io.StringIO, SecretFilter]
) -> None:
    logger, out, secret_filter = log
    vault = new_vault(tmp_path)
    vault.attach(secret_filter)
    key = vault.get("octopus.api_key").reveal()

    logger.info("calling the API with key %s", key)
    logger.warning(f"token refused: {SECRETS['tesla.refresh_token']}")
    try:
        raise RuntimeError(f"login failed for password {SECRETS['mqtt/password']}")
    except RuntimeError:
        logger.exception("device error")

    vault.set("tesla.refresh_token", "fresh-token-after-refresh-42")
    logger.info("new token %r", "fresh-token-after-refresh-42")
    secret_filter.add("added-at-run-time-99")
    logger.info("other %s", "added-at-run-time-99")
    logger.info("bad format %s %s", key)  # noqa: PLE1206 - logging would print the arguments

    text = out.getvalue()
    for value in [*SECRETS.values(), "fresh-token-after-refresh-42", "added-at-run-time-99"]:
        assert value not in text
    assert "calling the API with key ********" in text
    assert "token refused: ********" in text
    assert "RuntimeError: login failed for password ********" in text
    assert "new token '********'" in text
    assert "bad format %s %s (unformattable log arguments dropped)" in text
    assert text.count(MASK) == 5


def test_the_log_filter_works_with_caplog(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    vault = new_vault(tmp_path)
    secret_filter = SecretFilter(vault.secret_values())
    caplog.handler.addFilter(secret_filter)
    try:
        logging.getLogger("surplus.test.caplog").error("key=%s", SECRETS["octopus.api_key"])
    finally:
        caplog.handler.removeFilter(secret_filter)
    assert caplog.messages == [f"key={MASK}"]
    assert SECRETS["octopus.api_key"] not in caplog.text


def test_vault_repr_and_errors_hold_no_value(tmp_path: Path) -> None:
    vault = new_vault(tmp_path)
    assert str(tmp_path / "secrets.vault") in repr(vault)
    with pytest.raises(VaultError) as caught:
        vault.get("missing.entry")
    text = repr(vault) + str(caught.value) + repr(caught.value)
    for value in SECRETS.values():
        assert value not in text


def test_the_data_directory_vault_takes_a_passphrase_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from surplus.runtime.datadir import KEY_FILE, PASSPHRASE_ENV, open_vault

    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse battery staple")
    open_vault(tmp_path).set("gateway.password", "pw-in-passphrase-vault")
    assert not (tmp_path / KEY_FILE).exists()
    assert open_vault(tmp_path).get("gateway.password").reveal() == "pw-in-passphrase-vault"
    monkeypatch.setenv(PASSPHRASE_ENV, "wrong horse")
    with pytest.raises(VaultError, match="wrong passphrase"):
        open_vault(tmp_path)
    monkeypatch.delenv(PASSPHRASE_ENV)
    with pytest.raises(VaultError, match="passphrase"):
        open_vault(tmp_path)  # a key file would not open it, and none is written
    assert not (tmp_path / KEY_FILE).exists()


def test_a_write_keeps_what_another_process_stored_meanwhile(tmp_path: Path) -> None:
    path, key = tmp_path / "secrets.vault", tmp_path / "vault.key"
    service = Vault.open(path, key_file=key)  # opened at start, held for months
    Vault.open(path, key_file=key).set("gateway.password", "set-from-the-command-line")
    service.set("envoy.token", "renewed-by-the-service")
    reopened = Vault.open(path, key_file=key)
    assert reopened.names() == ["envoy.token", "gateway.password"]
    service.delete("envoy.token")
    assert Vault.open(path, key_file=key).names() == ["gateway.password"]
