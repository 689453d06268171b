"""Results for oracle apps: sealed by the worker (ECIES to the requesting oracle, chunked,
signed), opened by the app (verified against the ledger's digest). Pure; see ``chunks``."""

from workers.results.chunks import (
    CHUNK_BYTES,
    Expected,
    ResultChunk,
    decrypt,
    encrypt,
    open_result,
    parse_chunk,
    requester_key,
    result_digest,
    result_id,
    seal,
    select,
    unseal,
)

__all__ = [
    "CHUNK_BYTES",
    "Expected",
    "ResultChunk",
    "decrypt",
    "encrypt",
    "open_result",
    "parse_chunk",
    "requester_key",
    "result_digest",
    "result_id",
    "seal",
    "select",
    "unseal",
]
