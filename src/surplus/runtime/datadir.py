"""The data directory's files: the store, the vault and the vault's key file.

The service, ``surplus demo`` and the commands that change a running service's credentials
(``surplus secret``, ``surplus pin``) all open them here, so they agree on where they are.
"""

from __future__ import annotations

from pathlib import Path

from surplus.security.vault import Vault
from surplus.store import Store

__all__ = ["KEY_FILE", "STORE_FILE", "VAULT_FILE", "open_store", "open_vault"]

STORE_FILE, VAULT_FILE, KEY_FILE = "surplus.db", "secrets.vault", "vault.key"


def open_vault(data_dir: Path) -> Vault:
    """The vault of ``data_dir``, created with a new key file on first use."""
    return Vault.open(data_dir / VAULT_FILE, key_file=data_dir / KEY_FILE)


def open_store(data_dir: Path) -> Store:
    return Store.open(data_dir / STORE_FILE)
