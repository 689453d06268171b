"""Producer keys: encrypted Ethereum keystore files (eth-account's scrypt format)."""

from __future__ import annotations

import json
import os
import sys
from getpass import getpass
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from masa.errors import ConfigurationError

DEFAULT_PASSWORD_ENV = "MASA_KEY_PASSWORD"


def password_from(env_var: str = DEFAULT_PASSWORD_ENV, *, confirm: bool = False) -> str:
    """The keystore password: from ``env_var`` if set, else a prompt on a terminal. A new
    key (``confirm``) refuses an empty password."""
    value = os.environ.get(env_var)
    if value is None:
        if not sys.stdin.isatty():
            raise ConfigurationError(f"no password: set {env_var} or run on a terminal")
        value = getpass("keystore password: ")
        if confirm and getpass("repeat password: ") != value:
            raise ConfigurationError("passwords differ")
    if confirm and not value:
        raise ConfigurationError(f"refusing an empty password for a new key (set {env_var})")
    return value


def new_keystore(path: Path, password: str) -> LocalAccount:
    account: LocalAccount = Account.create()
    save_keystore(account, path, password)
    return account


def import_key(path: Path, private_key: str, password: str) -> LocalAccount:
    """Encrypt an existing private key (64 hex digits, 0x optional) into a keystore file."""
    text = private_key.strip().removeprefix("0x")
    if len(text) != 64 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise ConfigurationError("a private key is 64 hex digits (optionally 0x-prefixed)")
    try:
        account: LocalAccount = Account.from_key(bytes.fromhex(text))
    except ValueError as exc:
        raise ConfigurationError(f"not a valid secp256k1 private key: {exc}") from exc
    save_keystore(account, path, password)
    return account


def save_keystore(account: LocalAccount, path: Path, password: str) -> None:
    """Write ``account`` encrypted (scrypt) to ``path``, mode 0600; never overwrites."""
    if path.exists():
        raise ConfigurationError(f"{path} exists; refusing to overwrite a key")
    keystore = Account.encrypt(account.key, password)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise ConfigurationError(f"{path} exists; refusing to overwrite a key") from exc
    except OSError as exc:
        raise ConfigurationError(f"cannot write {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "w") as handle:
        json.dump(keystore, handle)


def load_keystore(path: Path, password: str) -> LocalAccount:
    keystore = _read_keystore(path)
    try:
        key = Account.decrypt(keystore, password)
    except ValueError as exc:
        if "mac mismatch" in str(exc).lower():
            raise ConfigurationError(f"cannot decrypt {path}: wrong password") from exc
        raise _damaged(path, exc) from exc
    except (KeyError, TypeError, AttributeError) as exc:
        raise _damaged(path, exc) from exc
    account: LocalAccount = Account.from_key(key)
    return account


def keystore_address(path: Path) -> str:
    """The address a keystore file names, without decrypting it."""
    address = _read_keystore(path).get("address")
    body = address.lower().removeprefix("0x") if isinstance(address, str) else ""
    if len(body) != 40 or any(c not in "0123456789abcdef" for c in body):
        raise _damaged(path, "no address")
    return "0x" + body


def _read_keystore(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigurationError(
            f"no key file at {path} (create one with 'masa keys new' or 'masa keys import')"
        ) from exc
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        keystore = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _damaged(path, "not JSON text") from exc
    if not isinstance(keystore, dict) or not isinstance(keystore.get("crypto"), dict):
        raise _damaged(path, "no crypto section")
    _check_cost(path, keystore["crypto"].get("kdfparams"))
    return keystore


#: Key derivation costs beyond these would take minutes or gigabytes: a damaged (or hostile)
#: file, not one eth-account wrote (scrypt n = 2^18, pbkdf2 c = 10^6).
MAX_SCRYPT_N, MAX_SCRYPT_RP, MAX_PBKDF2_C = 2**20, 64, 10**7


def _check_cost(path: Path, params: Any) -> None:
    if not isinstance(params, dict):
        raise _damaged(path, "no kdfparams")
    n, r, p, c = (params.get(k, 1) for k in ("n", "r", "p", "c"))
    if not all(type(v) is int and v >= 1 for v in (n, r, p, c)):
        raise _damaged(path, "kdfparams are not positive integers")
    if n > MAX_SCRYPT_N or r * p > MAX_SCRYPT_RP or c > MAX_PBKDF2_C:
        raise _damaged(path, "key derivation cost beyond any keystore masa writes")


def _damaged(path: Path, why: object) -> ConfigurationError:
    return ConfigurationError(
        f"{path} is not a usable keystore file ({why}); restore it from a backup or import"
        " the key again with 'masa keys import'"
    )
