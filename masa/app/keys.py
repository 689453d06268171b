"""Producer keys: encrypted Ethereum keystore files (eth-account's scrypt format)."""

from __future__ import annotations

import json
import os
import sys
from getpass import getpass
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from masa.errors import ConfigurationError

DEFAULT_PASSWORD_ENV = "MASA_KEY_PASSWORD"


def password_from(env_var: str = DEFAULT_PASSWORD_ENV, *, confirm: bool = False) -> str:
    """The keystore password: from ``env_var`` if set, else a prompt on a terminal."""
    value = os.environ.get(env_var)
    if value is not None:
        return value
    if not sys.stdin.isatty():
        raise ConfigurationError(f"no password: set {env_var} or run on a terminal")
    password = getpass("keystore password: ")
    if confirm and getpass("repeat password: ") != password:
        raise ConfigurationError("passwords differ")
    return password


def new_keystore(path: Path, password: str) -> LocalAccount:
    if path.exists():
        raise ConfigurationError(f"{path} exists; refusing to overwrite a key")
    account: LocalAccount = Account.create()
    save_keystore(account, path, password)
    return account


def save_keystore(account: LocalAccount, path: Path, password: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keystore = Account.encrypt(account.key, password)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(keystore, handle)


def load_keystore(path: Path, password: str) -> LocalAccount:
    try:
        keystore = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigurationError(
            f"no key file at {path} (create one with 'masa keys new')"
        ) from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"{path} is not a keystore file: {exc}") from exc
    try:
        account: LocalAccount = Account.from_key(Account.decrypt(keystore, password))
        return account
    except ValueError as exc:
        raise ConfigurationError(f"cannot decrypt {path}: wrong password?") from exc


def keystore_address(path: Path) -> str:
    """The address a keystore file names, without decrypting it."""
    try:
        address = json.loads(path.read_text())["address"]
    except (OSError, KeyError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"{path} is not a keystore file") from exc
    return "0x" + str(address).lower().removeprefix("0x")
