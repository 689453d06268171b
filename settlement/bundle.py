"""An epoch's input bundle: everything its statement depends on, so that anyone recomputes the
statement, its hash and its Merkle root with no access to our store (DESIGN §7, invariant 9).

A bundle is a folder of five files:

``events.jsonl``
    every stored signed event before the epoch's ``EpochClosed`` and that ``EpochClosed``
    itself, in store order (the ledger's unsigned records, which the fold does not read, are
    left out), one JSON object a line: ``position``, ``stream_id``, ``stream_version``,
    ``ingest`` (``consumer``, ``topic``, ``partition``, ``offset``, ``ingested_at``: ingestion
    time decides where a late event counts) and ``envelope``, the signed envelope exactly as
    stored.
``parameters.json``
    the reward parameters in force in the epoch.
``statement.json``
    the statement's canonical bytes (RFC 8785), whose keccak256 is the statement hash.
``tree.json``
    the Merkle tree's ``standard-v1`` dump (``null`` for an epoch without a leaf).
``manifest.json``
    the format, the epoch and its chain epoch, the root, the statement hash, the total
    cumulative, and the sha256 and size of each other file.

:func:`verify_bundle` checks the manifest's hashes, re-checks every envelope's signature with
the event contract's own checks, decodes every line through the store's one decoder, folds the
ledger projection over them (:func:`settlement.compute.settle_all`) and compares the bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson

from indexer.events import Role, parse_event
from indexer.events import types as t
from indexer.events.fields import format_timestamp
from indexer.store.log import LoggedEvent, UndecodableEvent, decode_record
from masa.errors import ConfigurationError, EventRejected, MasaError, PermanentError
from settlement.compute import Settled, settle_all
from settlement.inputs import RewardParameters

BUNDLE_FORMAT = "masa-bundle-v1"
EVENTS, PARAMETERS, STATEMENT, TREE, MANIFEST = (
    "events.jsonl",
    "parameters.json",
    "statement.json",
    "tree.json",
    "manifest.json",
)
HASHED_FILES = (EVENTS, PARAMETERS, STATEMENT, TREE)
CHAIN_EPOCH_OFFSET = 1
"""Ledger epoch ``e`` is posted as the distributor's epoch ``e + 1`` (its first is 1)."""
_NEVER = datetime.max.replace(tzinfo=UTC)
TRUSTED_ROLES = (Role.INDEXER, Role.GOVERNOR, Role.SETTLER)
"""Roles trusted by setting, not by stake: a manifest may name their keys."""


class EpochNotClosed(PermanentError):
    """The events hold no ``EpochClosed`` for the epoch asked for."""


def chain_epoch(epoch: int) -> int:
    return epoch + CHAIN_EPOCH_OFFSET


# --- export ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportedBundle:
    directory: Path
    settled: Settled
    events: int
    manifest: dict[str, Any]


def settle_through(events: Iterable[LoggedEvent], epoch: int) -> tuple[Settled, list[LoggedEvent]]:
    """The settlement of ``epoch`` and every event it depends on (its ``EpochClosed`` last)."""
    seen: list[LoggedEvent] = []

    def tap() -> Iterator[LoggedEvent]:
        for event in events:
            seen.append(event)
            yield event

    for settled in settle_all(tap()):
        if settled.epoch == epoch:
            return settled, seen
    raise EpochNotClosed(f"epoch {epoch} is not closed in the events read ({len(seen)} events)")


def export_bundle(
    events: Iterable[LoggedEvent],
    epoch: int,
    directory: Path,
    trusted: Mapping[Role, Collection[str]] | None = None,
) -> ExportedBundle:
    """Write the bundle of ``epoch`` from ``events`` (in store order) into ``directory``, which
    must not exist or be empty. ``trusted`` names the keys ingest trusts as indexer, governor
    and settler; the verifier then also checks that those events come from them."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ConfigurationError(f"{directory} exists and is not an empty folder")
    settled, seen = settle_through(events, epoch)
    assert seen[-1].position == settled.close_position
    used = [event for event in seen if event.signed]
    contents = {
        EVENTS: b"".join(event_line(event) + b"\n" for event in used),
        PARAMETERS: _pretty(parameters_json(settled.inputs.parameters)),
        STATEMENT: settled.statement.canonical_bytes(),
        TREE: _pretty(settled.statement.dump() if settled.statement.lines else None),
    }
    manifest = {
        "format": BUNDLE_FORMAT,
        "epoch": epoch,
        "chain_epoch": chain_epoch(epoch),
        "root": settled.statement.root,
        "statement_hash": settled.statement.statement_hash,
        "total_cumulative": str(settled.statement.total_cumulative),
        "close_position": settled.close_position,
        "finalized_block": settled.finalized_block,
        "events": len(used),
        "files": {name: _file_entry(data) for name, data in contents.items()},
    }
    if trusted is not None:
        manifest["trusted"] = {str(r): sorted(trusted.get(r, ())) for r in TRUSTED_ROLES}
    _write_atomically(directory, {**contents, MANIFEST: _pretty(manifest)})
    return ExportedBundle(directory, settled, len(used), manifest)


def _write_atomically(directory: Path, contents: Mapping[str, bytes]) -> None:
    """All files or none: written beside ``directory``, then renamed into place."""
    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for name, data in contents.items():
        (partial / name).write_bytes(data)
    if directory.exists():
        directory.rmdir()
    os.replace(partial, directory)


def event_line(event: LoggedEvent) -> bytes:
    """One line of ``events.jsonl``: where the event sits in the store, and the envelope."""
    i = event.ingested
    return orjson.dumps(
        {
            "position": event.position,
            "stream_id": str(event.stream_id),
            "stream_version": event.stream_version,
            "ingest": {
                "consumer": i.consumer,
                "topic": i.topic,
                "partition": i.partition,
                "offset": i.offset,
                "ingested_at": format_timestamp(i.at),
            },
            "envelope": event.envelope,
        },
        option=orjson.OPT_SORT_KEYS,
    )


def parameters_json(p: RewardParameters) -> dict[str, Any]:
    return {
        "epoch": p.epoch,
        "emission": str(p.emission),
        "stake_cap": str(p.stake_cap),
        "min_uptime_ppm": p.min_uptime_ppm,
        "protocol_share_bps": p.protocol_share_bps,
        "data_share_bps": p.data_share_bps,
        "treasury": p.treasury,
    }


def _pretty(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()


def _file_entry(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


# --- verify ---------------------------------------------------------------------------------


@dataclass
class BundleReport:
    """What :func:`verify_bundle` found: ``ok`` when ``reasons`` is empty."""

    directory: Path
    epoch: int | None = None
    chain_epoch: int | None = None
    root: str | None = None
    statement_hash: str | None = None
    events: int = 0
    recomputed_root: str | None = None
    recomputed_hash: str | None = None
    trusted_checked: bool = False
    reasons: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.reasons

    def line(self) -> str:
        """One line for a terminal: the verdict and, on failure, the first reason."""
        if self.ok:
            return (
                f"bundle ok: epoch {self.epoch} (chain epoch {self.chain_epoch}), {self.events} "
                f"events, root {self.root}, statement {self.statement_hash}"
                + ("" if self.trusted_checked else " (the manifest names no trusted keys)")
            )
        more = f" (and {len(self.reasons) - 1} more)" if len(self.reasons) > 1 else ""
        return f"bundle FAILED: {self.reasons[0]}{more}"

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "directory": str(self.directory),
            "epoch": self.epoch,
            "chain_epoch": self.chain_epoch,
            "root": self.root,
            "statement_hash": self.statement_hash,
            "events": self.events,
            "recomputed_root": self.recomputed_root,
            "recomputed_statement_hash": self.recomputed_hash,
            "trusted_checked": self.trusted_checked,
            "reasons": self.reasons,
        }


def verify_bundle(directory: Path) -> BundleReport:
    """Recompute the bundle in ``directory`` from its events alone and compare."""
    report = BundleReport(directory)
    try:
        manifest = _read_manifest(directory, report)
        files = {name: _read(directory / name) for name in HASHED_FILES}
        _check_hashes(manifest, files, report)
        events = _events(files[EVENTS], report, _trusted(manifest, report))
        if events is not None:
            _recompute(events, manifest, files, report)
    except _Fatal as fatal:
        report.reasons.append(str(fatal))
    return report


class _Fatal(Exception):
    """A bundle too damaged to check further."""


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _Fatal(f"cannot read {path.name}: {exc.strerror or exc}") from exc


def _read_manifest(directory: Path, report: BundleReport) -> dict[str, Any]:
    try:
        manifest = json.loads(_read(directory / MANIFEST))
    except ValueError as exc:
        raise _Fatal(f"{MANIFEST} is not JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise _Fatal(f"{MANIFEST}: unknown format {found!r}, expected {BUNDLE_FORMAT}")
    try:
        report.epoch = int(manifest["epoch"])
        report.chain_epoch = int(manifest["chain_epoch"])
        report.root = str(manifest["root"])
        report.statement_hash = str(manifest["statement_hash"])
        if not isinstance(manifest["files"], dict):
            raise TypeError("files is not an object")
    except (KeyError, TypeError, ValueError) as exc:
        raise _Fatal(f"{MANIFEST} is malformed: {exc!r}") from exc
    if report.chain_epoch != chain_epoch(report.epoch):
        report.reasons.append(
            f"{MANIFEST}: chain epoch {report.chain_epoch} is not epoch {report.epoch} + "
            f"{CHAIN_EPOCH_OFFSET}"
        )
    return manifest


def _check_hashes(manifest: dict[str, Any], files: dict[str, bytes], report: BundleReport) -> None:
    for name, data in files.items():
        entry = manifest["files"].get(name)
        expected = entry.get("sha256") if isinstance(entry, dict) else None
        actual = hashlib.sha256(data).hexdigest()
        if expected != actual:
            report.reasons.append(
                f"{name}: sha256 {actual} does not match the manifest's {expected}"
            )


def _trusted(manifest: dict[str, Any], report: BundleReport) -> dict[str, set[str]] | None:
    trusted = manifest.get("trusted")
    if trusted is None:
        return None
    report.trusted_checked = True
    try:
        return {str(role): {str(k).lower() for k in trusted[str(role)]} for role in TRUSTED_ROLES}
    except (KeyError, TypeError) as exc:
        raise _Fatal(f"{MANIFEST}: malformed trusted keys: {exc!r}") from exc


def _events(
    data: bytes, report: BundleReport, trusted: dict[str, set[str]] | None
) -> list[LoggedEvent] | None:
    """The lines as stored events, each envelope's signature checked (and, when the manifest
    names them, the producer of each trusted-role event among its keys); None if unusable."""
    events: list[LoggedEvent] = []
    bad = len(report.reasons)
    ids: set[UUID] = set()
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            event = _event(raw, trusted)
        except (_LineError, MasaError) as exc:
            report.reasons.append(f"{EVENTS} line {number}: {exc}")
            continue
        if events and event.position <= events[-1].position:
            report.reasons.append(
                f"{EVENTS} line {number}: position {event.position} does not follow "
                f"{events[-1].position}"
            )
        if event.event_id in ids:
            report.reasons.append(f"{EVENTS} line {number}: event {event.event_id} twice")
        ids.add(event.event_id)
        events.append(event)
    report.events = len(events)
    return events if len(report.reasons) == bad else None


class _LineError(Exception):
    pass


def _event(raw: bytes, trusted: dict[str, set[str]] | None) -> LoggedEvent:
    try:
        line = orjson.loads(raw)
        position, stream = int(line["position"]), UUID(line["stream_id"])
        version, envelope = int(line["stream_version"]), line["envelope"]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise _LineError(f"malformed line: {exc!r}") from exc
    try:
        checked = parse_event(orjson.dumps(envelope), now=_NEVER, max_clock_skew=timedelta(0))
    except EventRejected as exc:
        raise _LineError(f"event {envelope.get('id')} at position {position}: {exc}") from exc
    role = checked.event_type.role
    if (
        trusted is not None
        and role in TRUSTED_ROLES
        and checked.envelope.producer not in trusted[role]
    ):
        raise _LineError(
            f"event {checked.envelope.id} at position {position}: {checked.envelope.type} by "
            f"{checked.envelope.producer}, not a trusted {role} of the manifest"
        )
    if checked.stream_id != stream:
        raise _LineError(
            f"event {checked.envelope.id} at position {position}: stream {stream} is not its "
            f"aggregate's ({checked.stream_id})"
        )
    try:
        return decode_record(position, stream, version, line)
    except UndecodableEvent as exc:
        raise _LineError(str(exc)) from exc


def _recompute(
    events: list[LoggedEvent],
    manifest: dict[str, Any],
    files: dict[str, bytes],
    report: BundleReport,
) -> None:
    epoch = report.epoch
    last = events[-1] if events else None
    if last is None or not isinstance(last.payload, t.EpochClosed) or last.payload.epoch != epoch:
        report.reasons.append(f"{EVENTS}: the last event is not the EpochClosed of epoch {epoch}")
        return
    try:
        settled = [s for s in settle_all(events) if s.epoch == epoch]
    except (MasaError, ValueError) as exc:
        report.reasons.append(f"recomputing epoch {epoch} failed: {exc}")
        return
    if not settled or settled[-1].close_position != last.position:
        report.reasons.append(f"{EVENTS}: epoch {epoch} is not settled by its last event")
        return
    statement = settled[-1].statement
    report.recomputed_root, report.recomputed_hash = statement.root, statement.statement_hash
    if statement.canonical_bytes() != files[STATEMENT]:
        report.reasons.append(
            f"{STATEMENT} differs from the statement recomputed from the events (statement "
            f"hash {statement.statement_hash})"
        )
    if statement.root != report.root:
        report.reasons.append(
            f"root recomputed from the events is {statement.root}, the manifest says {report.root}"
        )
    if statement.statement_hash != report.statement_hash:
        report.reasons.append(
            f"statement hash recomputed from the events is {statement.statement_hash}, the "
            f"manifest says {report.statement_hash}"
        )
    if str(statement.total_cumulative) != str(manifest.get("total_cumulative")):
        report.reasons.append(
            f"total cumulative recomputed is {statement.total_cumulative} wei, the manifest "
            f"says {manifest.get('total_cumulative')}"
        )
    tree = statement.dump() if statement.lines else None
    if _loads(files[TREE]) != tree:
        report.reasons.append(f"{TREE} is not the tree of the recomputed statement")
    if _loads(files[PARAMETERS]) != parameters_json(settled[-1].inputs.parameters):
        report.reasons.append(f"{PARAMETERS} are not the parameters in force in epoch {epoch}")


def _loads(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return {"unreadable": True}
