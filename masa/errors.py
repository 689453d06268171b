"""The one error hierarchy of the Masa ledger.

    MasaError
    ├── ConfigurationError      bad settings or arguments; fix and rerun
    ├── RetryableError          transient: broker, database or RPC unavailable; retry with backoff
    │   └── ResultNotReady      no outcome (or no result) for a request yet
    └── PermanentError          retrying cannot help
        ├── EventRejected       an inbound message failed validation (carries a RejectReason)
        ├── ChainError          contract call reverted, deployment missing, reorg too deep
        ├── JobError            a worker job failed (unreachable site, timeout, bad spec)
        ├── ResultRejected      an oracle app refused a delivered result (carries a reason)
        └── InsufficientBalance a fee beyond an oracle's available prepaid fees

Adapters translate library errors into these with ``raise ... from exc``; the CLI turns
them into one line and an exit code.
"""

from __future__ import annotations


class MasaError(Exception):
    """Base of every error raised on purpose by this project."""

    exit_code = 1


class ConfigurationError(MasaError):
    """Settings or arguments are wrong; nothing was changed."""

    exit_code = 2


class RetryableError(MasaError):
    """A transient failure: the same call may succeed later."""

    exit_code = 75  # EX_TEMPFAIL


class PermanentError(MasaError):
    """Retrying the same call cannot succeed."""


class EventRejected(PermanentError):
    """An inbound message was rejected; ``reason`` is a machine-readable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ChainError(PermanentError):
    """A chain interaction failed for a reason retrying will not fix."""


class ReorgTooDeep(ChainError):
    """A reorganisation reached below the finality depth: stop and page a human."""


class JobError(PermanentError):
    """A worker job failed; ``reason`` is a machine-readable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ResultNotReady(RetryableError):
    """A request has no stored outcome yet, or its result has not arrived in time."""


class ResultRejected(PermanentError):
    """A delivered result failed verification; ``reason`` is a machine-readable code
    (``bad_chunk``, ``bad_signature``, ``wrong_worker``, ``incomplete``, ``digest_mismatch``,
    ``undecryptable``, ``request_failed``, ``not_requester``, ``no_result``, ...)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class InsufficientBalance(PermanentError):
    """A request's fee is beyond what the oracle's final deposits leave available (``masa
    request submit`` refuses it unless ``--force``; ingest holds such a request until a deposit
    covers it, then dead-letters it as ``insufficient_balance``)."""
