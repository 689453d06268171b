"""The README's demo command, end to end on embedded defaults: `masa demo` (as scripts/demo
runs it, minus the set-up) deploys, stakes, indexes, runs short epochs in which an oracle app
gets a news summary and a synthetic network works, settles them on the in-process EVM (roots
posted, verified), claims for a worker and a contributor, and reports it all."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from masa.app.demo_chain import DemoChain
from masa.app.demo_print import print_money, print_news
from masa.app.demo_site import SECTIONS
from settlement.formula import KINDS
from workers.scraping import DataItem, items_digest

MASA = str(Path(sys.executable).parent / "masa")
PROBE_REASONS = {
    "bad_envelope", "bad_json", "bad_payload", "bad_signature", "clock_skew", "duplicate_request",
    "not_contributor", "request_closed", "source_taken", "stale_heartbeat", "too_large",
    "unknown_type", "untrusted_indexer", "wrong_key", "wrong_role",
}  # fmt: skip
WORKERS, MIN_UPTIME_PPM = 5, 100_000


def test_the_demo_runs_the_network_settles_two_epochs_and_pays(tmp_path: Path) -> None:
    done = subprocess.run(
        [MASA, "--home", str(tmp_path), "demo", "--no-llm", "--requests", "30", "--json"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)

    assert report["chain"]["staked_workers"] == WORKERS and report["chain"]["staked_oracles"] == 2
    assert report["chain_events_indexed"]["Staked"] == report["stored_by_type"]["Staked.v1"] == 7
    assert report["live_requests"] == {"completed": 1, "failed:unreachable": 1}
    assert set(report["rejected_by_reason"]) == PROBE_REASONS
    assert all(count == 1 for count in report["rejected_by_reason"].values())
    assert (tmp_path / "demo" / "store.sqlite").exists()
    news_summary_is_decrypted_verified_and_credited(report["news_summary"])
    assert sorted(report["attribution_units"].values()) == sorted(SECTIONS.values())
    epochs = two_or_more_epochs_posted_and_verified(report["settlement"])
    every_worker_earned_in_every_epoch(epochs, report["read_models"]["uptime"])
    claims_paid_the_statements_to_the_wei(report["settlement"]["payees"], len(epochs))
    printed_on_a_terminal(report)


def news_summary_is_decrypted_verified_and_credited(news: dict[str, Any]) -> None:
    data = news["data"]
    assert (data["status"], data["verified"]) == ("completed", True)
    items = [DataItem.model_validate(item) for item in data["items"]]
    assert items_digest(items) == data["result_digest"]  # what the ledger stored
    assert {item.fields["headline"] for item in items} == {
        f"{desk.title()} story {n}" for desk, count in SECTIONS.items() for n in range(1, count + 1)
    }
    assert news["summary"] is None and "--no-llm" in news["llm"]
    assert news["failed"]["reason"] == "unreachable"
    # each desk's contributor is credited one unit per article it registered
    credited = {c["source"].rstrip("/").rsplit("/", 1)[-1]: c["units"] for c in news["credited"]}
    assert credited == SECTIONS


def two_or_more_epochs_posted_and_verified(money: dict[str, Any]) -> list[dict[str, Any]]:
    epochs = money["epochs"]
    assert len(epochs) >= 2
    assert [(e["epoch"], e["chain_epoch"]) for e in epochs] == [
        (n, n + 1) for n in range(len(epochs))
    ]
    assert all(e["state"] == "confirmed" and e["tx_hash"] for e in epochs)
    assert len({e["root"] for e in epochs}) == len(epochs)
    verify = money["verify"]
    assert verify["ok"] and [c["status"] for c in verify["epochs"]] == ["ok"] * len(epochs)
    for check, epoch in zip(verify["epochs"], epochs, strict=True):
        assert check["computed_root"] == check["posted_root"] == epoch["root"]
    return list(epochs)


def every_worker_earned_in_every_epoch(
    epochs: list[dict[str, Any]], uptime: list[dict[str, Any]]
) -> None:
    for e in epochs:
        assert len(e["uptime_ppm"]) == WORKERS and min(e["uptime_ppm"].values()) >= MIN_UPTIME_PPM
        assert e["emission_earners"] == WORKERS, e
        assert e["worker_fee_earners"] >= 1 and e["data_fee_earners"] >= 1, e
        # the read model's evidence: covered while staked, the whole epoch staked
        rows = [r for r in uptime if r["epoch"] == e["epoch"]]
        assert len(rows) == WORKERS
        assert all(r["staked_s"] == r["expected_s"] and r["covered_s"] > 0 for r in rows), rows


def claims_paid_the_statements_to_the_wei(payees: list[dict[str, Any]], epochs: int) -> None:
    assert [p["role"] for p in payees] == ["worker", "contributor"]
    for payee in payees:
        lines, claim = payee["statement_lines"], payee["claim"]
        assert [line["epoch"] for line in lines] == list(range(epochs))
        cumulative = int(lines[-1]["cumulative"])
        assert cumulative == sum(int(line["earned"]) for line in lines) > 0
        assert int(claim["paid"]) == int(claim["cumulative"]) == cumulative
        assert int(claim["balance_after"]) - int(claim["balance_before"]) == cumulative
        assert claim["balance_matches_statement"] and claim["epoch"] == epochs - 1
        for line, explained in zip(lines, payee["explain"], strict=True):
            by_kind = {k: int(v["wei"]) for k, v in explained["by_kind"].items()}
            assert sum(by_kind.values()) == int(explained["earned"]) == int(line["earned"])
            assert all(by_kind.get(k, 0) == int(line[k]) for k in KINDS)
    worker, contributor = (p["statement_lines"] for p in payees)
    assert all(int(line["emission"]) > 0 for line in worker)
    assert int(contributor[-1]["cumulative"]) == sum(int(line["data_fee"]) for line in contributor)


def printed_on_a_terminal(report: dict[str, Any]) -> None:
    out = io.StringIO()
    console = Console(file=out, width=160)
    print_news(console, report["news_summary"])
    print_money(console, report["settlement"])
    text = out.getvalue()
    assert "decrypted and verified" in text and "summary: skipped: --no-llm" in text
    assert "masa settle verify --all: ok" in text
    assert text.count("= the statement's cumulative") == 2


def test_the_demo_chain_clock_stays_behind_the_wall_clock_until_it_goes_live() -> None:
    """eth-tester's own clock ran half a minute ahead after the demo's set-up, so stakes counted
    from the future and the heartbeats before them earned nothing (covered_s = 0)."""
    chain = DemoChain.open(history_s=60)
    admin = chain.admin().address
    for _ in range(20):  # twenty blocks in much less than twenty seconds
        chain.w3.eth.send_transaction({"from": admin, "to": admin, "value": 1})
    chain.mine(2)
    times = [chain.w3.eth.get_block(n)["timestamp"] for n in range(chain.w3.eth.block_number + 1)]
    assert times == list(range(times[0], times[0] + len(times)))  # one second a block
    assert times[-1] < time.time() - 30
    now = int(time.time())
    chain.go_live()
    chain.w3.eth.send_transaction({"from": admin, "to": admin, "value": 1})
    assert now <= chain.head_time() <= int(time.time()) + 1
    time.sleep(1.1)  # an empty block mined later is stamped then, not when the last one was
    now = int(time.time())
    chain.mine(1)
    assert now <= chain.head_time() <= int(time.time()) + 1
