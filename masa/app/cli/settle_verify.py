"""``masa settle export|verify|explain|proof``: check statements from the store, the chain and
bundles, and trace every wei (DESIGN §7, invariants 4 and 9).

Ledger epoch ``e`` is posted on chain as the distributor's epoch ``e + 1``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from contracts.client import DistributorState, MasaClient
from contracts.deploy import Deployment
from indexer.events import Role
from indexer.events.fields import parse_address
from indexer.store.log import EventLog
from masa.app.cli.common import JsonOption, print_json, settings
from masa.app.settings import Settings
from masa.app.verify import verify_store
from masa.app.wiring import open_event_log, open_web3
from masa.errors import ConfigurationError, PermanentError
from settlement.bundle import chain_epoch, export_bundle, settle_through
from settlement.compute import Settled, settle_all
from settlement.explain import explain as explain_address
from settlement.formula import Term
from settlement.merkle import REWARD_LEAF_ENCODING, verify_proof

app = typer.Typer(
    help="Settlement: close epochs and post roots (run, status); verify, explain, prove,"
    " export bundles.",
    no_args_is_help=True,
)
settle = app

VERIFIER_MODULE = "settlement.verify_bundle"


class VerificationFailed(PermanentError):
    """A recomputation disagrees with the chain or with a bundle."""


# --- store and chain ------------------------------------------------------------------------


@contextmanager
def _event_log(config: Settings) -> Iterator[EventLog]:
    log, store = open_event_log(config)
    try:
        yield log
    finally:
        store.close()


def _client(config: Settings) -> MasaClient:
    if config.chain.rpc_url == "inprocess":
        raise ConfigurationError(
            "chain.rpc_url is 'inprocess', an EVM that lives inside one command (masa demo);"
            " set MASA_CHAIN__RPC_URL to the JSON-RPC endpoint the roots were posted on"
        )
    return MasaClient(open_web3(config), Deployment.load(config.deployment_path))


# --- commands -------------------------------------------------------------------------------


@app.command("export")
def export(
    ctx: typer.Context,
    directory: Path = typer.Argument(..., help="Folder to write the bundle into."),
    epoch: int = typer.Option(..., "--epoch", min=0, help="The (ledger) epoch to export."),
    as_json: bool = JsonOption,
) -> None:
    """Write an epoch's input bundle: the signed events its statement depends on, the
    parameters, the statement, the Merkle tree and a manifest of their hashes.

    Anyone holding the folder recomputes the root with `python -m settlement.verify_bundle DIR`.

    Examples:
      masa settle export --epoch 3 ./bundle-3
    """
    config = settings(ctx)
    i = config.ingest
    trusted = {
        Role.INDEXER: i.trusted_indexers,
        Role.GOVERNOR: i.trusted_governors,
        Role.SETTLER: i.trusted_settlers,
    }
    with _event_log(config) as log:
        bundle = export_bundle(log.iterate(), epoch, directory, trusted)
    if as_json:
        print_json({"directory": str(directory), **bundle.manifest})
        return
    m = bundle.manifest
    typer.echo(
        f"epoch {epoch} (chain epoch {m['chain_epoch']}): {bundle.events} events to "
        f"{directory}, root {m['root']}, statement {m['statement_hash']}"
    )


@app.command("verify")
def verify(
    ctx: typer.Context,
    epoch: int | None = typer.Option(None, "--epoch", min=0, help="One (ledger) epoch."),
    every: bool = typer.Option(False, "--all", help="Every closed or posted epoch."),
    bundle: Path | None = typer.Option(
        None, "--bundle", help="Verify an exported bundle instead, as an outsider would."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Recompute statements from the store and compare them with the roots on chain (or
    check a bundle with the standalone verifier). Exits 1 on any mismatch.

    Examples:
      masa settle verify --all
      masa settle verify --epoch 3 --json
      masa settle verify --bundle ./bundle-3
    """
    if sum((epoch is not None, every, bundle is not None)) != 1:
        raise typer.BadParameter("give exactly one of --epoch N, --all or --bundle DIR")
    if bundle is not None:
        raise typer.Exit(_verify_bundle_outside(bundle, as_json))
    config = settings(ctx)
    client = _client(config)
    with _event_log(config) as log:
        checks = verify_store(client, log, epoch)
    if as_json:
        print_json(
            {"ok": not any(c.failed for c in checks), "epochs": [c.to_json() for c in checks]}
        )
    else:
        for check in checks:
            typer.echo(check.line())
        if not checks:
            typer.echo("no epoch is closed in the store and no root is posted on chain")
    if any(c.failed for c in checks):
        raise typer.Exit(1)


def _verify_bundle_outside(directory: Path, as_json: bool) -> int:
    """Run the standalone verifier in a fresh interpreter with none of our settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASA_")}
    command = [sys.executable, "-m", VERIFIER_MODULE, str(directory.resolve())]
    if as_json:
        command.append("--json")
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    return done.returncode


@app.command("explain")
def explain(
    ctx: typer.Context,
    address: str = typer.Argument(..., help="The address whose earnings to trace."),
    epoch: int = typer.Option(..., "--epoch", min=0, help="The (ledger) epoch."),
    as_json: bool = JsonOption,
) -> None:
    """Trace every wei an address earned in an epoch to its rule, the formula's terms and the
    ids of the stored events that earned it; the lines add up to what it earned.

    Examples:
      masa settle explain 0xabc... --epoch 3
    """
    who = _address(address)
    with _event_log(settings(ctx)) as log:
        settled, _ = settle_through(log.iterate(), epoch)
    explanation = explain_address(settled.rewards, settled.statement, who)
    if not as_json:
        typer.echo(explanation.render(), nl=False)
        return
    awards = settled.rewards.awards_of(who)
    print_json(
        {
            "address": who,
            "epoch": epoch,
            "chain_epoch": chain_epoch(epoch),
            "earned": str(explanation.earned),
            "previous_cumulative": str(explanation.previous_cumulative),
            "cumulative": str(explanation.cumulative),
            "lines": [
                {
                    "kind": line.kind,
                    "amount": str(line.amount),
                    "rule": line.rule,
                    "formula": line.formula,
                    "terms": {k: _term(v) for k, v in award.terms.items()},
                    "event_ids": list(line.event_ids),
                }
                for line, award in zip(explanation.lines, awards, strict=True)
            ],
        }
    )


def _term(value: Term) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, tuple):
        return [_term(v) for v in value]
    return value


def _address(text: str) -> str:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise ConfigurationError(f"{text!r} is not an address: {exc}") from exc


@app.command("proof")
def proof(
    ctx: typer.Context,
    address: str = typer.Argument(..., help="The address to claim for."),
    as_json: bool = JsonOption,
) -> None:
    """What an address may claim against the root on chain: its cumulative, what it was paid
    (on chain), the claimable rest and the Merkle proof, and whether the previous root still
    accepts its previous proof.

    Examples:
      masa settle proof 0xabc... --json
    """
    who = _address(address)
    config = settings(ctx)
    client = _client(config)
    state = client.distributor_state()
    if state.current_epoch == 0:
        raise VerificationFailed("no root is posted on chain yet; nothing can be claimed")
    epoch = state.current_epoch - 1
    with _event_log(config) as log:
        settled = {s.epoch: s for s in settle_all(log.iterate()) if s.epoch <= epoch}
    current = settled.get(epoch)
    if current is None:
        raise VerificationFailed(
            f"the chain's epoch {state.current_epoch} (ledger epoch {epoch}) is not closed in "
            "the store"
        )
    if current.statement.root != state.root:
        raise VerificationFailed(
            f"the root on chain {state.root} is not the one recomputed from the store "
            f"({current.statement.root}) for epoch {epoch}; run masa settle verify --all"
        )
    report = _proof_report(client, who, epoch, current, settled.get(epoch - 1), state)
    if as_json:
        print_json(report)
        return
    typer.echo(
        f"{who}: cumulative {report['cumulative']} wei, claimed {report['claimed']}, "
        f"claimable {report['claimable']} against root {report['root']} (epoch {epoch}, chain "
        f"epoch {state.current_epoch}); proof [{', '.join(report['proof'])}]; previous root "
        f"{'accepts' if report['previous']['accepted'] else 'does not accept'} "
        f"its previous proof"
    )


def _proof_report(
    client: MasaClient,
    who: str,
    epoch: int,
    current: Settled,
    previous: Settled | None,
    state: DistributorState,
) -> dict[str, Any]:
    line = current.statement.line(who)
    cumulative = 0 if line is None else line.cumulative
    claimed = client.claimed(who)
    branch = current.statement.proof(who) if line is not None else []
    if line is not None and not verify_proof(
        state.root, REWARD_LEAF_ENCODING, (who, cumulative), branch
    ):
        raise VerificationFailed(f"the proof of {who} does not verify against {state.root}")
    old = previous.statement.line(who) if previous else None
    old_proof = previous.statement.proof(who) if previous and old else []
    accepted = bool(
        previous
        and old
        and previous.statement.root == state.previous_root
        and verify_proof(
            state.previous_root, REWARD_LEAF_ENCODING, (who, old.cumulative), old_proof
        )
    )
    return {
        "address": who,
        "epoch": epoch,
        "chain_epoch": chain_epoch(epoch),
        "root": state.root,
        "cumulative": str(cumulative),
        "claimed": str(claimed),
        "claimable": str(max(cumulative - claimed, 0)),
        "proof": branch,
        "previous": {
            "epoch": epoch - 1 if previous else None,
            "root": state.previous_root,
            "cumulative": str(old.cumulative) if old else None,
            "proof": old_proof,
            "accepted": accepted,
        },
    }
