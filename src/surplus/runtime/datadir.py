"""The data directory's files: the store, the vault and the vault's key file.

The service, ``surplus demo`` and the commands that change a running service's credentials
(``surplus secret``, ``surplus pin``) all open them here, so they agree on where they are.

The vault's key is the key file ``vault.key`` (0600, made on first use) unless the
environment holds ``SURPLUS_VAULT_PASSPHRASE``: the key is then derived from that
passphrase (scrypt) and no key file is written. A vault opened the other way than it was
created with is a clear error that overwrites nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from surplus.security.vault import Vault
from surplus.store import Store

__all__ = ["KEY_FILE", "PASSPHRASE_ENV", "STORE_FILE", "VAULT_FILE", "open_store", "open_vault"]

STORE_FILE, VAULT_FILE, KEY_FILE = "surplus.db", "secrets.vault", "vault.key"
PASSPHRASE_ENV = "SURPLUS_VAULT_PASSPHRASE"


def open_vault(data_dir: Path) -> Vault:
    """The vault of ``data_dir``, created on first use (with a new key file, unless a
    passphrase is given in the environment)."""
    passphrase = os.environ.get(PASSPHRASE_ENV)
    if passphrase:
        return Vault.open(data_dir / VAULT_FILE, passphrase=passphrase)
    return Vault.open(data_dir / VAULT_FILE, key_file=data_dir / KEY_FILE)


def open_store(data_dir: Path) -> Store:
    return Store.open(data_dir / STORE_FILE)
