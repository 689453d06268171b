"""Result delivery, the pure part: seal a result for its oracle (encrypt, chunk, sign) and
open it again (parse, verify, assemble, decrypt, check the digest). No bus, no store.

A result is the bytes ``RequestCompleted.result_digest`` commits to: keccak256(result) is the
digest (the RFC 8785 JSON of a data job's items, the UTF-8 text of an LLM completion). It is
encrypted with ECIES (secp256k1, eciespy 0.4's default format) to the public key that signed
the ``RequestSubmitted``, the ciphertext is cut into chunks that fit one bus record, and each
chunk travels as a JSON header signed by the worker (EIP-191 over the keccak of the canonical
JSON of the header without ``signature``, as events are)::

    {"request_id", "result_id", "worker", "chunk", "chunks", "digest", "ciphertext",
     "signature"}

Sealing is deterministic: the ephemeral key and the nonce derive (HMAC-SHA256) from the
worker's key, the result id, the recipient and the digest, so a worker that serves a request
again publishes byte-identical records, and an app that sees both copies keeps one. The
ciphertext is still the standard one: ``ecies.decrypt`` (or eciesjs) opens it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

import ecies
import orjson
from Crypto.Cipher import AES
from eth_account.signers.local import LocalAccount

from indexer.bus.base import MAX_RECORD_BYTES
from indexer.events import MASA_NAMESPACE, canonical_json
from indexer.events.signing import (
    SignatureError,
    keccak,
    recover_address,
    recover_public_key,
    sign_digest,
    signing_digest,
)
from masa.errors import ResultRejected

#: Ciphertext bytes per chunk: its base64 (4/3) plus the header stay well inside a record.
CHUNK_BYTES = 512 * 1024
#: The ECIES parameters (eciespy 0.4's defaults; docs/oracle.md spells them out).
CURVE: Literal["secp256k1"] = "secp256k1"
EPHEMERAL_KEY_BYTES = 65  # uncompressed 04 ‖ X ‖ Y
NONCE_BYTES = 16
TAG_BYTES = 16
#: At most this many chunks: 4096 chunks of 512 KiB = 2 GiB, more than any result should be.
MAX_CHUNKS = 4096
_FIELDS = ("request_id", "result_id", "worker", "chunk", "chunks", "digest", "ciphertext")
_GROUP_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

assert ecies.ECIES_CONFIG.elliptic_curve == CURVE
assert ecies.ECIES_CONFIG.symmetric_nonce_length == NONCE_BYTES
assert not ecies.ECIES_CONFIG.is_ephemeral_key_compressed
assert not ecies.ECIES_CONFIG.is_hkdf_key_compressed
assert ecies.ECIES_CONFIG.symmetric_algorithm == "aes-256-gcm"
# the header's fixed fields, the key and base64's growth fit a record with room to spare
assert math.ceil(CHUNK_BYTES / 3) * 4 + 1024 < MAX_RECORD_BYTES


def result_id(request_id: UUID, worker: str) -> UUID:
    """The id of ``worker``'s result for a request: the same however often it serves it."""
    return uuid.uuid5(MASA_NAMESPACE, f"delivery:{request_id}:{worker.lower()}")


def result_digest(result: bytes) -> str:
    """``0x`` + keccak256 of the result: what ``RequestCompleted.result_digest`` holds."""
    return "0x" + keccak(result).hex()


# --- sealing (the worker) -------------------------------------------------------------------


@dataclass(frozen=True)
class ResultChunk:
    """One chunk as it travels: its header fields, and the signed JSON bytes."""

    request_id: UUID
    result_id: UUID
    worker: str
    chunk: int
    chunks: int
    digest: str
    ciphertext: bytes
    value: bytes

    @property
    def key(self) -> bytes:
        """The bus key: the request id, lower case (the request's other records' key)."""
        return str(self.request_id).encode()


def encrypt(recipient: bytes, result: bytes, *, seed: bytes) -> bytes:
    """ECIES ciphertext of ``result`` for ``recipient`` (a 65- or 33-byte secp256k1 public
    key) in eciespy's format: ephemeral key ‖ nonce ‖ tag ‖ AES-256-GCM ciphertext, with the
    AES key = HKDF-SHA256(ephemeral key ‖ shared point, both uncompressed). The ephemeral
    secret and the nonce derive from ``seed`` (keep it secret; unique per result)."""
    receiver = ecies.PublicKey(CURVE, recipient)  # type: ignore[attr-defined]  # not in __all__
    counter = 0
    while True:  # a derived secret outside [1, n) is astronomically rare; derive again
        secret = hmac.digest(seed, b"ephemeral" + counter.to_bytes(4, "big"), hashlib.sha256)
        if 0 < int.from_bytes(secret, "big") < _GROUP_ORDER:
            break
        counter += 1
    ephemeral = ecies.PrivateKey(CURVE, secret)  # type: ignore[attr-defined]  # not in __all__
    key = ephemeral.encapsulate(receiver, ecies.ECIES_CONFIG.is_hkdf_key_compressed)
    nonce = hmac.digest(seed, b"nonce", hashlib.sha256)[:NONCE_BYTES]
    sealed, tag = AES.new(key, AES.MODE_GCM, nonce=nonce).encrypt_and_digest(result)
    return ephemeral.public_key.to_bytes(False) + nonce + tag + sealed


def seal(
    worker: LocalAccount,
    request_id: UUID,
    recipient: bytes,
    result: bytes,
    *,
    chunk_bytes: int = CHUNK_BYTES,
) -> list[ResultChunk]:
    """The signed chunks that deliver ``result`` to the holder of ``recipient``'s key."""
    address = worker.address.lower()
    rid = result_id(request_id, address)
    digest = result_digest(result)
    seed = hmac.digest(
        bytes(worker.key),
        b"masa-result:" + rid.bytes + recipient + bytes.fromhex(digest[2:]),
        hashlib.sha256,
    )
    ciphertext = encrypt(recipient, result, seed=seed)
    pieces = [ciphertext[i : i + chunk_bytes] for i in range(0, len(ciphertext), chunk_bytes)]
    if len(pieces) > MAX_CHUNKS:
        raise ValueError(f"a result of {len(result)} bytes needs more than {MAX_CHUNKS} chunks")
    chunks = []
    for index, piece in enumerate(pieces):
        header: dict[str, Any] = {
            "request_id": str(request_id),
            "result_id": str(rid),
            "worker": address,
            "chunk": index,
            "chunks": len(pieces),
            "digest": digest,
            "ciphertext": base64.b64encode(piece).decode("ascii"),
        }
        signature = sign_digest(worker, keccak(canonical_json(header)))
        value = orjson.dumps({**header, "signature": signature})
        chunks.append(
            ResultChunk(request_id, rid, address, index, len(pieces), digest, piece, value)
        )
    return chunks


# --- opening (the app) ----------------------------------------------------------------------


def parse_chunk(value: bytes) -> ResultChunk:
    """A chunk from its record, with its signature checked against its ``worker``; raises
    ``ResultRejected`` (``bad_chunk``, ``bad_signature``)."""
    try:
        raw = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ResultRejected("bad_chunk", f"not JSON: {exc}") from exc
    if not isinstance(raw, dict) or set(raw) != {*_FIELDS, "signature"}:
        fields = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
        raise ResultRejected("bad_chunk", f"expected the fields {sorted(_FIELDS)}, got {fields}")
    header = {k: raw[k] for k in _FIELDS}
    chunk = _typed(header)
    try:
        signer = recover_address(keccak(canonical_json(header)), raw["signature"])
    except (SignatureError, ValueError) as exc:
        raise ResultRejected("bad_signature", f"chunk {chunk.chunk}: {exc}") from exc
    if signer != chunk.worker:
        raise ResultRejected(
            "bad_signature", f"chunk {chunk.chunk} names {chunk.worker} but {signer} signed it"
        )
    return ResultChunk(
        chunk.request_id,
        chunk.result_id,
        chunk.worker,
        chunk.chunk,
        chunk.chunks,
        chunk.digest,
        chunk.ciphertext,
        value,
    )


def _typed(header: Mapping[str, Any]) -> ResultChunk:
    try:
        request_id, rid = UUID(header["request_id"]), UUID(header["result_id"])
        worker, digest = header["worker"], header["digest"]
        index, count = header["chunk"], header["chunks"]
        if not (isinstance(worker, str) and len(worker) == 42 and worker == worker.lower()):
            raise ValueError(f"worker {worker!r} is not a lower-case address")
        int(worker[2:], 16)
        if not (isinstance(digest, str) and len(digest) == 66 and digest.startswith("0x")):
            raise ValueError(f"digest {digest!r} is not 0x + 32 bytes hex")
        int(digest[2:], 16)
        if type(index) is not int or type(count) is not int or not 0 <= index < count:
            raise ValueError(f"chunk {index!r} of {count!r}")
        if count > MAX_CHUNKS:
            raise ValueError(f"{count} chunks > {MAX_CHUNKS}")
        ciphertext = base64.b64decode(header["ciphertext"], validate=True)
    except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as exc:
        raise ResultRejected("bad_chunk", str(exc)) from exc
    return ResultChunk(request_id, rid, worker, index, count, digest, ciphertext, b"")


@dataclass(frozen=True)
class Expected:
    """What the ledger stored about a request: who closed it and the digest it committed."""

    request_id: UUID
    worker: str
    digest: str

    @property
    def result_id(self) -> UUID:
        return result_id(self.request_id, self.worker)


def select(chunks: Iterable[ResultChunk | ResultRejected], expected: Expected) -> list[ResultChunk]:
    """The chunks of the expected result, in order, one per index, from what was read on the
    request's key (records that did not parse as their ``ResultRejected``). Chunks of anyone
    else, or of another digest, are ignored while the expected ones are all there; else
    raises ``ResultRejected``: why the first other record was refused, ``incomplete``, or
    ``no_result``; and ``conflicting_chunks`` when two signed copies of one chunk differ."""
    mine: dict[int, ResultChunk] = {}
    counts: set[int] = set()
    refused: list[str] = []
    for chunk in chunks:
        if isinstance(chunk, ResultRejected):
            refused.append(f"{chunk.reason}: {chunk.detail}")
            continue
        why = _refusal(chunk, expected)
        if why:
            refused.append(why)
            continue
        counts.add(chunk.chunks)
        seen = mine.get(chunk.chunk)
        if seen is not None and seen.ciphertext != chunk.ciphertext:
            raise ResultRejected(
                "conflicting_chunks", f"two different chunk {chunk.chunk} signed by {chunk.worker}"
            )
        mine[chunk.chunk] = chunk
    if len(counts) > 1:
        raise ResultRejected("conflicting_chunks", f"chunk counts {sorted(counts)} disagree")
    total = counts.pop() if counts else 0
    missing = sorted(set(range(total)) - set(mine))
    if total and not missing:
        return [mine[i] for i in range(total)]
    if refused:
        reason, _, detail = refused[0].partition(": ")
        raise ResultRejected(reason, f"{detail} ({len(refused)} record(s) refused)")
    if not total:
        raise ResultRejected("no_result", f"no chunk of result {expected.result_id}")
    raise ResultRejected("incomplete", f"{len(missing)} of {total} chunks missing: {missing[:10]}")


def _refusal(chunk: ResultChunk, expected: Expected) -> str:
    if chunk.request_id != expected.request_id:
        return f"bad_chunk: chunk names request {chunk.request_id}"
    if chunk.worker != expected.worker:
        return f"wrong_worker: signed by {chunk.worker}, but {expected.worker} closed the request"
    if chunk.result_id != expected.result_id:
        return f"bad_chunk: result id {chunk.result_id}, expected {expected.result_id}"
    if chunk.digest != expected.digest:
        return f"digest_mismatch: chunk digest {chunk.digest}, the ledger stored {expected.digest}"
    return ""


def decrypt(private_key: bytes, ciphertext: bytes) -> bytes:
    """The result inside an ECIES ciphertext; ``undecryptable`` when it is not for this key
    (or was altered)."""
    try:
        return bytes(ecies.decrypt(private_key, ciphertext))
    except (ValueError, TypeError) as exc:
        raise ResultRejected(
            "undecryptable", f"not encrypted to this key, or altered ({exc})"
        ) from exc


def open_result(
    chunks: Iterable[ResultChunk | ResultRejected], private_key: bytes, expected: Expected
) -> bytes:
    """The verified result: the expected worker's chunks (``select``), then ``unseal``."""
    return unseal(select(chunks, expected), private_key, expected)


def unseal(parts: Sequence[ResultChunk], private_key: bytes, expected: Expected) -> bytes:
    """Selected chunks assembled, decrypted with the oracle's ``private_key`` and checked
    against the stored digest (``undecryptable``, ``digest_mismatch``)."""
    result = decrypt(private_key, b"".join(c.ciphertext for c in parts))
    got = result_digest(result)
    if got != expected.digest:
        raise ResultRejected(
            "digest_mismatch", f"the result hashes to {got}, the ledger stored {expected.digest}"
        )
    return result


def requester_key(envelope: Mapping[str, Any]) -> bytes:
    """The 65-byte public key that signed an envelope (a ``RequestSubmitted`` as received):
    the key its result is encrypted to."""
    unsigned = {k: v for k, v in envelope.items() if k != "signature"}
    return recover_public_key(signing_digest(unsigned), envelope["signature"])
