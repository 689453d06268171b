"""``masa demo``'s report on a terminal: the news summary the oracle app got, and the money
(roots posted, statement lines, ``explain``, ``verify``, claims). The JSON report has it all
unabridged (``masa demo --json``)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from masa.app.cli.common import table

WEI = 10**18


def short(address: str | None) -> str:
    return "-" if not address else f"{address[:10]}…"


def masa(wei: str | int) -> str:
    return f"{int(wei) / WEI:,.6f}"


def print_news(console: Console, news: dict[str, Any] | None) -> None:
    if news is None:
        return
    data = news["data"]
    console.print(
        f"[bold]news summary[/bold]: data request {short(data['request_id'])} {data['status']}"
        f" by worker {short(data['worker'])}: {len(data['items'])} items, decrypted and"
        f" {'verified' if data.get('verified') else 'NOT verified'} against the ledger's digest"
        f" {short(data['result_digest'])}"
    )
    rows = [[i["fields"].get("headline"), i["fields"].get("lede"), i["source_url"]]
            for i in data["items"][:3]]  # fmt: skip
    console.print(table("first items", ["headline", "lede", "source_url"], rows))
    summary = news["summary"]
    if summary is None:
        console.print(f"summary: {news['llm']}")
    else:
        console.print(
            f"summary (LLM request {short(summary['request_id'])}, {summary['status']},"
            f" {'verified' if summary.get('verified') else 'NOT verified'}):"
            f" {summary.get('text')!r}"
        )
    what = "the summary" if summary is not None else "the items"
    credited = [[c["contributor"], c["source"], c["units"]] for c in news["credited"]]
    console.print(table(f"contributors credited for {what}", ["contributor", "source", "units"],
                        credited))  # fmt: skip
    failed = news["failed"]
    console.print(f"and a request to a closed port: {failed['status']} ({failed.get('reason')})")


def print_money(console: Console, money: dict[str, Any] | None) -> None:
    if money is None:
        return
    rows = [[e["epoch"], e["state"], short(e["root"]), short(e["tx_hash"]), e["block_number"],
             masa(e["total_cumulative"]),
             f"{e['emission_earners']} / {e['worker_fee_earners']} / {e['data_fee_earners']}"]
            for e in money["epochs"]]  # fmt: skip
    columns = ["epoch", "state", "root", "postRoot tx", "block", "cumulative MASA",
               "addresses paid emission / fee / data"]  # fmt: skip
    title = (f"settlement: {len(rows)} epochs of {money['epoch_length_s']} s posted by the "
             "settler (ledger epoch e is chain epoch e + 1)")  # fmt: skip
    console.print(table(title, columns, rows))
    for payee in money["payees"]:
        _print_payee(console, payee)
    verify = money["verify"]
    console.print(f"[bold]masa settle verify --all[/bold]: {'ok' if verify['ok'] else 'FAILED'}")
    for c in verify["epochs"]:
        root, posted = short(c["computed_root"]), short(c["posted_root"])
        console.print(f"  epoch {c['epoch']}: {c['status']}, root {root} from the store, {posted}"
                      " on chain")  # fmt: skip


def _print_payee(console: Console, payee: dict[str, Any]) -> None:
    rows = [[line["epoch"], masa(line["emission"]), masa(line["worker_fee"]),
             masa(line["data_fee"]), masa(line["earned"]), masa(line["cumulative"])]
            for line in payee["statement_lines"]]  # fmt: skip
    title = f"statement lines of the {payee['role']} {payee['address']} (MASA)"
    columns = ["epoch", "emission", "worker_fee", "data_fee", "earned", "cumulative"]
    console.print(table(title, columns, rows))
    for ex in payee["explain"]:
        parts = " + ".join(f"{kind} {masa(v['wei'])} ({_n(v['lines'], 'line')})"
                           for kind, v in ex["by_kind"].items())  # fmt: skip
        console.print(f"  explain epoch {ex['epoch']}: {masa(ex['earned'])} = {parts or '0'},"
                      f" {_n(ex['events'], 'event')}")  # fmt: skip
    c = payee["claim"]
    same = "= the statement's cumulative" if c["balance_matches_statement"] else "MISMATCH"
    console.print(
        f"  masa claim: paid {c['paid']} wei (epoch {c['epoch']}'s root, sent by"
        f" {short(c['sender'])}); balance {c['balance_before']} -> {c['balance_after']} wei {same}"
    )


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
