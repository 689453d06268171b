"""Canonical JSON (RFC 8785, JCS): the bytes every signature covers.

``rfc8785`` is the reference implementation. ``orjson`` with sorted keys produces the same
bytes for JSON without floats, without integers beyond ±(2**53 - 1) and without object keys
outside the Basic Multilingual Plane (JCS sorts keys by UTF-16 code units, orjson by code
points). Our events never contain floats and amounts travel as decimal strings, so the fast
path covers them; anything else takes the reference path. A property test holds the two equal.
"""

from __future__ import annotations

from typing import Any

import orjson
import rfc8785

from masa.errors import PermanentError

MAX_SAFE_INTEGER = 2**53 - 1


class CanonicalizationError(PermanentError):
    """The value has no canonical JSON form (NaN, integer out of the safe range, bad text)."""


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON-compatible value."""
    try:
        if _fast_path_is_exact(value):
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, orjson.JSONEncodeError, TypeError, ValueError) as exc:
        raise CanonicalizationError(str(exc)) from exc


def _fast_path_is_exact(value: Any) -> bool:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return bool(-MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER)
    if kind is dict:
        return all(
            type(k) is str and (k.isascii() or _in_bmp(k)) and _fast_path_is_exact(v)
            for k, v in value.items()
        )
    if kind is list or kind is tuple:
        return all(_fast_path_is_exact(v) for v in value)
    return False


def _in_bmp(text: str) -> bool:
    return all(ord(ch) <= 0xFFFF for ch in text)
