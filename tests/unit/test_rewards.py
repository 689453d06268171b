"""The reward formula, statements and explanations (settlement/), held to DESIGN §7 and §9."""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sha3 import keccak_256

from settlement.explain import explain
from settlement.formula import KINDS, Rewards, compute_rewards, split_fee
from settlement.inputs import (
    BPS,
    PPM,
    CreditedUse,
    EpochInputs,
    InvalidRewardInputs,
    PaidRequest,
    RewardParameters,
    WorkerEpoch,
    parameters_for_epoch,
)
from settlement.merkle import REWARD_LEAF_ENCODING, StandardMerkleTree, verify_proof
from settlement.statement import (
    ZERO_ROOT,
    InvalidStatement,
    Statement,
    StatementLine,
    build_statement,
    check_statement,
    load_statement,
    same_bytes,
)
from tests.support.fixtures import require

ROOT = Path(__file__).resolve().parents[2]
OZ_SCRIPT = ROOT / "tests" / "support" / "oz_merkle.mjs"
OZ_PACKAGE = ROOT / "node_modules" / "@openzeppelin" / "merkle-tree" / "package.json"
REWARDS_DOC = ROOT / "docs" / "rewards.md"
TIMES, MINUS = "\N{MULTIPLICATION SIGN}", "\N{MINUS SIGN}"

POOL = [f"0x{n:040x}" for n in (1, 2, 3, 4, 5, 0xABC, 2**160 - 1)]
"""Few addresses, so workers, contributors and the treasury often coincide."""
EVENTS = [f"event-{i}" for i in range(12)]
PROPERTY = settings(max_examples=60, deadline=None)

addresses = st.sampled_from(POOL)
wei = st.one_of(st.integers(0, 10**4), st.integers(0, 10**27))
event_ids = st.lists(st.sampled_from(EVENTS), max_size=3).map(tuple)


@st.composite
def parameter_sets(draw: st.DrawFn, epoch: int | None = None) -> RewardParameters:
    protocol = draw(st.integers(0, BPS))
    return RewardParameters(
        epoch=draw(st.integers(1, 10**6)) if epoch is None else epoch,
        emission=draw(wei),
        stake_cap=draw(wei),
        min_uptime_ppm=draw(st.integers(0, PPM)),
        protocol_share_bps=protocol,
        data_share_bps=draw(st.integers(0, BPS - protocol)),
        treasury=draw(addresses),
    )


workers = st.builds(
    WorkerEpoch,
    address=addresses,
    uptime_ppm=st.integers(0, PPM),
    lowest_stake=wei,
    slashed=st.booleans(),
    evidence_event_ids=event_ids,
)
uses = st.builds(
    CreditedUse,
    contributor=addresses,
    source=st.sampled_from(["example.org", "news.example", "docs.example"]),
    units=st.integers(0, 50),
    event_id=st.sampled_from(EVENTS),
)
requests = st.builds(
    PaidRequest,
    request_id=st.sampled_from([f"request-{i}" for i in range(10)]),
    worker=addresses,
    fee=wei,
    paid=st.booleans(),
    completed_event_id=st.sampled_from(EVENTS),
    uses=st.lists(uses, max_size=5).map(tuple),
)


@st.composite
def epoch_inputs(draw: st.DrawFn, epoch: int | None = None) -> EpochInputs:
    return EpochInputs(
        parameters=draw(parameter_sets(epoch)),
        workers=tuple(draw(st.lists(workers, max_size=6, unique_by=lambda w: w.address))),
        requests=tuple(draw(st.lists(requests, max_size=6, unique_by=lambda r: r.request_id))),
        previous_cumulative=draw(st.dictionaries(addresses, wei, max_size=4)),
    )


def statement_of(inputs: EpochInputs) -> Statement:
    return build_statement(compute_rewards(inputs), inputs.previous_cumulative)


# --- properties --------------------------------------------------------------------------------


@PROPERTY
@given(epoch_inputs())
def test_every_wei_is_conserved(inputs: EpochInputs) -> None:
    rewards = compute_rewards(inputs)
    paid_fees = sum(r.fee for r in inputs.requests if r.paid)
    assert rewards.total == inputs.parameters.emission + paid_fees
    statement = build_statement(rewards, inputs.previous_cumulative)
    assert statement.total_earned == rewards.total
    assert statement.total_cumulative == sum(inputs.previous_cumulative.values()) + rewards.total


@PROPERTY
@given(epoch_inputs())
def test_no_amount_is_negative(inputs: EpochInputs) -> None:
    rewards = compute_rewards(inputs)
    assert all(award.amount >= 0 for award in rewards.awards)
    assert all(award.amount > 0 or award.kind == "emission" for award in rewards.awards)
    for line in statement_of(inputs).lines:
        assert min(line.emission, line.worker_fee, line.data_fee, line.treasury) >= 0


@PROPERTY
@given(st.lists(epoch_inputs(), min_size=2, max_size=4))
def test_cumulative_never_decreases_across_epochs(epochs: list[EpochInputs]) -> None:
    previous: Statement | None = None
    for number, drawn in enumerate(epochs, start=1):
        carried = {} if previous is None else previous.cumulative()
        parameters = replace(drawn.parameters, epoch=number)
        inputs = replace(drawn, parameters=parameters, previous_cumulative=carried)
        statement = statement_of(inputs)
        for address, before in carried.items():
            line = statement.line(address)
            assert line is not None and line.cumulative >= before
        assert check_statement(previous, statement, statement.total_cumulative, 0, number - 1) == []
        previous = statement


@PROPERTY
@given(epoch_inputs())
def test_workers_without_weight_earn_no_emission(inputs: EpochInputs) -> None:
    rewards = compute_rewards(inputs)
    parameters = inputs.parameters
    for worker in inputs.workers:
        below = worker.uptime_ppm < parameters.min_uptime_ppm
        if below or worker.slashed or worker.lowest_stake == 0:
            assert rewards.earned_by_kind(worker.address)["emission"] == 0


@PROPERTY
@given(epoch_inputs(), st.integers(0, PPM - 1))
def test_below_min_uptime_no_emission(inputs: EpochInputs, uptime: int) -> None:
    parameters = replace(inputs.parameters, min_uptime_ppm=uptime + 1, emission=10**18)
    lazy = WorkerEpoch("0x" + "ee" * 20, uptime, 10**18, False, ("heartbeat",))
    rewards = compute_rewards(replace(inputs, parameters=parameters, workers=(lazy,)))
    assert rewards.earned_by_kind(lazy.address)["emission"] == 0
    assert rewards.earned_by_kind(parameters.treasury)["treasury"] >= 10**18


@PROPERTY
@given(epoch_inputs())
def test_unpaid_requests_earn_nothing(inputs: EpochInputs) -> None:
    paid_only = replace(inputs, requests=tuple(r for r in inputs.requests if r.paid))
    assert statement_of(paid_only).canonical_bytes() == statement_of(inputs).canonical_bytes()
    unpaid = {r.request_id for r in inputs.requests if not r.paid}
    assert not any(a.terms.get("request_id") in unpaid for a in compute_rewards(inputs).awards)


@PROPERTY
@given(epoch_inputs(), st.randoms(use_true_random=False))
def test_input_order_changes_nothing(inputs: EpochInputs, rng: random.Random) -> None:
    def shuffled(items: Any) -> tuple[Any, ...]:
        items = list(items)
        rng.shuffle(items)
        return tuple(items)

    reordered = EpochInputs(
        inputs.parameters,
        shuffled(
            replace(w, evidence_event_ids=shuffled(w.evidence_event_ids)) for w in inputs.workers
        ),
        shuffled(replace(r, uses=shuffled(r.uses)) for r in inputs.requests),
        dict(shuffled(inputs.previous_cumulative.items())),
    )
    assert compute_rewards(reordered) == compute_rewards(inputs)
    assert statement_of(reordered).canonical_bytes() == statement_of(inputs).canonical_bytes()


@PROPERTY
@given(epoch_inputs())
def test_explanation_lines_sum_to_earned(inputs: EpochInputs) -> None:
    rewards = compute_rewards(inputs)
    statement = build_statement(rewards, inputs.previous_cumulative)
    for address in {*rewards.addresses(), *inputs.previous_cumulative}:
        explanation = explain(rewards, statement, address)
        assert sum(line.amount for line in explanation.lines) == explanation.earned
        assert explanation.earned == rewards.earned(address)
        line = statement.line(address)
        assert explanation.cumulative == (0 if line is None else line.cumulative)
        assert len(explanation.render().splitlines()) == 1 + len(explanation.lines)


@PROPERTY
@given(epoch_inputs())
def test_every_line_has_a_proof_and_the_json_round_trips(inputs: EpochInputs) -> None:
    statement = statement_of(inputs)
    assert load_statement(statement.canonical_bytes()) == statement
    if not statement.lines:
        assert statement.root == ZERO_ROOT
        return
    for line in statement.lines:
        value = (line.address, line.cumulative)
        assert verify_proof(
            statement.root, REWARD_LEAF_ENCODING, value, statement.proof(line.address)
        )


@PROPERTY
@given(st.data())
def test_a_parameter_change_applies_from_its_epoch_only(data: st.DataObject) -> None:
    first = data.draw(parameter_sets(epoch=1))
    change = data.draw(parameter_sets(epoch=3))
    drawn = [data.draw(epoch_inputs(epoch=n)) for n in (1, 2, 3, 4)]

    def run(published: list[RewardParameters]) -> list[bytes]:
        out, carried = [], {}
        for n, inputs in enumerate(drawn, start=1):
            parameters = parameters_for_epoch(published, n)
            statement = statement_of(
                replace(inputs, parameters=parameters, previous_cumulative=carried)
            )
            out.append(statement.canonical_bytes())
            carried = statement.cumulative()
        return out

    before, after = run([first]), run([first, change])
    assert after[:2] == before[:2]
    assert parameters_for_epoch([first, change], 2) == replace(first, epoch=2)
    assert parameters_for_epoch([first, change], 4) == replace(change, epoch=4)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10**30), st.integers(0, BPS), st.integers(0, BPS))
def test_fee_split_adds_up(fee: int, protocol: int, data: int) -> None:
    data = min(data, BPS - protocol)
    parameters = RewardParameters(1, 0, 0, 0, protocol, data, POOL[0])
    split = split_fee(parameters, fee)
    assert split.protocol + split.data + split.worker == fee
    assert split.protocol == fee * protocol // BPS and split.data == fee * data // BPS


# --- a worked example, computed by hand ------------------------------------------------------

W1, W2, W3, C1, C2, TREASURY = (f"0x{n:040x}" for n in (0x11, 0x22, 0x33, 0xC1, 0xC2, 0x7E))


def hand_example() -> EpochInputs:
    """E = 101, cap 300, u_min 25%, p 5%, d 30%.

    weights: W1 500000·min(200, 300) = 1e8, W2 1000000·min(900, 300) = 3e8, W3 slashed 0;
    emission: W1 101·1e8 // 4e8 = 25, W2 303e8 // 4e8 = 75, dust 1.
    q1 (fee 99, by W2): protocol 99·500 // 10000 = 4, data 99·3000 // 10000 = 29, worker 66;
    data by units: C1 2 of 3 → 19, C2 1 of 3 → 9, dust 1. q2 is unpaid: nothing.
    """
    parameters = RewardParameters(7, 101, 300, 250_000, 500, 3000, TREASURY)
    workers = (
        WorkerEpoch(W1, 500_000, 200, False, ("hb-1",)),
        WorkerEpoch(W2, PPM, 900, False, ("hb-2", "stake-2")),
        WorkerEpoch(W3, PPM, 1000, True, ("slash-3",)),
    )
    q1_uses = (
        CreditedUse(C1, "a.example", 1, "used-1"),
        CreditedUse(C2, "b.example", 1, "used-1"),
        CreditedUse(C1, "c.example", 1, "used-2"),
    )
    requests = (
        PaidRequest("q1", W2, 99, True, "done-1", q1_uses),
        PaidRequest("q2", W1, 1000, False, "done-2"),
    )
    return EpochInputs(parameters, workers, requests, {W3: 500})


def test_hand_computed_example() -> None:
    rewards = compute_rewards(hand_example())
    expected = {
        W1: {"emission": 25, "worker_fee": 0, "data_fee": 0, "treasury": 0},
        W2: {"emission": 75, "worker_fee": 66, "data_fee": 0, "treasury": 0},
        W3: {"emission": 0, "worker_fee": 0, "data_fee": 0, "treasury": 0},
        C1: {"emission": 0, "worker_fee": 0, "data_fee": 19, "treasury": 0},
        C2: {"emission": 0, "worker_fee": 0, "data_fee": 9, "treasury": 0},
        TREASURY: {"emission": 0, "worker_fee": 0, "data_fee": 0, "treasury": 1 + 4 + 1},
    }
    assert {a: rewards.earned_by_kind(a) for a in rewards.addresses()} == expected
    statement = build_statement(rewards, {W3: 500})
    assert statement.cumulative() == {TREASURY: 6, W1: 25, W2: 141, W3: 500, C1: 19, C2: 9}
    assert statement.total_cumulative == 700


def test_hand_computed_explanation() -> None:
    rewards = compute_rewards(hand_example())
    statement = build_statement(rewards, {W3: 500})
    assert explain(rewards, statement, W2).render() == (
        f"{W2} in epoch 7: earned 141 wei, cumulative 0 + 141 = 141 wei\n"
        f"  emission 75 wei = 101 {TIMES} 1000000·min(900, 300) / 400000000 rounded down "
        "(uptime 1000000 ppm, stake 900, cap 300) from events [hb-2, stake-2]\n"
        f"  worker_fee 66 wei = 99 {MINUS} 4 protocol {MINUS} 29 data, worker share of request q1 "
        "from events [done-1]\n"
    )
    assert explain(rewards, statement, W3).render() == (
        f"{W3} in epoch 7: earned 0 wei, cumulative 500 + 0 = 500 wei\n"
        "  emission 0 wei = nothing: slashed during the epoch from events [slash-3]\n"
    )
    c1 = explain(rewards, statement, C1).lines
    assert [line.formula for line in c1] == [
        f"data_fee 19 wei = 29 {TIMES} 2 / 3 units rounded down, data share of request q1 "
        "(sources a.example, c.example)"
    ]
    assert c1[0].event_ids == ("done-1", "used-1", "used-2")


def test_no_weight_sends_the_whole_emission_to_the_treasury() -> None:
    inputs = replace(hand_example(), workers=(WorkerEpoch(W1, 0, 10, False),), requests=())
    rewards = compute_rewards(inputs)
    assert rewards.earned_by_kind(TREASURY)["treasury"] == 101
    assert [a.rule for a in rewards.awards_of(TREASURY)] == ["emission_unweighted"]


def test_a_request_without_credited_units_pays_its_data_part_to_the_treasury() -> None:
    zero = (CreditedUse(C1, "a.example", 0, "used-1"),)
    inputs = replace(hand_example(), requests=(PaidRequest("q1", W2, 99, True, "done-1", zero),))
    rewards = compute_rewards(inputs)
    assert rewards.earned(C1) == 0
    assert {a.rule: a.amount for a in rewards.awards_of(TREASURY)}["data_unattributed"] == 29


def test_an_empty_epoch_has_the_zero_root() -> None:
    parameters = RewardParameters(1, 0, 0, 0, 0, 0, TREASURY)
    statement = statement_of(EpochInputs(parameters))
    assert statement.lines == () and statement.root == ZERO_ROOT
    with pytest.raises(InvalidStatement, match="no leaves"):
        statement.tree()


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: RewardParameters(1, 0, 0, 0, 6000, 5000, TREASURY), "exceeds 10000"),
        (lambda: RewardParameters(1, -1, 0, 0, 0, 0, TREASURY), "emission must be"),
        (lambda: RewardParameters(1, 0, 0, PPM + 1, 0, 0, TREASURY), "at most 1000000"),
        (lambda: RewardParameters(1, 0, 0, 0, 0, 0, TREASURY.upper()), "lower-case"),
        (lambda: WorkerEpoch(W1, 1, True, False), "non-negative integer"),  # type: ignore[arg-type]
        (lambda: CreditedUse(C1, "s", -1, "e"), "units must be"),
        (lambda: PaidRequest("q", "0x12", 1, True, "e"), "lower-case"),
        (lambda: replace(hand_example(), workers=hand_example().workers[:1] * 2), "more than once"),
        (lambda: parameters_for_epoch([hand_example().parameters], 6), "no parameters"),
    ],
)
def test_invalid_inputs_are_refused(build: Any, message: str) -> None:
    with pytest.raises(InvalidRewardInputs, match=message):
        build()


# --- checks before posting ---------------------------------------------------------------------


def _statement(epoch: int, cumulative: dict[str, int]) -> Statement:
    lines = tuple(
        StatementLine(address, 0, 0, 0, amount, amount, amount)
        for address, amount in sorted(cumulative.items())
    )
    return Statement(epoch, lines, sum(cumulative.values()))


def test_check_statement_accepts_the_next_funded_epoch() -> None:
    previous, new = _statement(1, {W1: 5}), _statement(2, {W1: 5, W2: 3})
    assert check_statement(previous, new, 6, 2, 1) == []
    assert check_statement(None, _statement(1, {W1: 5}), 5, 0, 0) == []


@pytest.mark.parametrize(
    ("previous", "new", "funded", "deposited", "last_posted", "codes"),
    [
        (
            _statement(1, {W1: 5, W2: 3}),
            _statement(2, {W1: 4, W2: 4}),
            99,
            0,
            1,
            ["cumulative_decreased"],
        ),
        (_statement(1, {W1: 5, W2: 3}), _statement(2, {W1: 9}), 99, 0, 1, ["cumulative_decreased"]),
        (_statement(1, {W1: 5}), _statement(2, {W1: 9}), 5, 3, 1, ["over_funded"]),
        (_statement(1, {W1: 5}), _statement(2, {W1: 5}), 99, 0, 2, ["not_next_epoch"]),
        (None, _statement(2, {W1: 5}), 99, 0, 0, ["not_next_epoch"]),
        (_statement(1, {W1: 5}), _statement(3, {W1: 5}), 99, 0, 2, ["previous_not_adjacent"]),
        (
            _statement(1, {W1: 5, W2: 1}),
            _statement(3, {W1: 4}),
            1,
            0,
            1,
            [
                "not_next_epoch",
                "previous_not_adjacent",
                "cumulative_decreased",
                "cumulative_decreased",
                "over_funded",
            ],
        ),
    ],
)
def test_check_statement_refuses(
    previous: Statement | None,
    new: Statement,
    funded: int,
    deposited: int,
    last_posted: int,
    codes: list[str],
) -> None:
    refusals = check_statement(previous, new, funded, deposited, last_posted)
    assert [refusal.code for refusal in refusals] == codes
    for refusal in refusals:
        assert refusal.message and refusal.remedy and "\n" not in str(refusal)


def test_check_statement_names_the_address_that_decreased() -> None:
    [refusal] = check_statement(_statement(1, {W1: 5}), _statement(2, {W1: 4}), 9, 0, 1)
    assert refusal.message == f"cumulative of {W1} falls from 5 to 4 wei in epoch 2"


def test_same_bytes_refuses_differing_recomputations() -> None:
    assert same_bytes(_statement(2, {W1: 5}), _statement(2, {W1: 5})) == []
    [refusal] = same_bytes(_statement(2, {W1: 5}), _statement(2, {W1: 6}))
    assert refusal.code == "recomputation_differs"
    assert _statement(2, {W1: 5}).statement_hash in refusal.message


def test_statement_hash_is_keccak_of_the_canonical_bytes() -> None:
    statement = build_statement(compute_rewards(hand_example()), {W3: 500})
    assert statement.statement_hash == "0x" + keccak_256(statement.canonical_bytes()).hexdigest()
    document = json.loads(statement.canonical_bytes())
    by_address = {line["address"]: line for line in document["lines"]}
    assert document["total_cumulative"] == "700" and by_address[TREASURY]["earned"] == "6"
    assert by_address[W3] == {"address": W3, "cumulative": "500", "earned": "0"} | dict.fromkeys(
        KINDS, "0"
    )


# --- cross-check with @openzeppelin/merkle-tree ------------------------------------------------


def _oz_batch(inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None or not OZ_PACKAGE.exists():
        require("node or @openzeppelin/merkle-tree is not installed (run npm ci)")
    done = subprocess.run(
        [node, str(OZ_SCRIPT)],
        input=json.dumps(inputs),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout)


def _random_statement(seed: int) -> Statement:
    rng = random.Random(seed)
    pool = [f"0x{rng.getrandbits(160):040x}" for _ in range(rng.randrange(1, 30))]
    parameters = RewardParameters(
        seed + 1, rng.getrandbits(90), 10**21, 500_000, 800, 1500, pool[0]
    )
    workers = tuple(
        WorkerEpoch(
            a, rng.randrange(PPM + 1), rng.getrandbits(72), rng.random() < 0.1, (f"hb-{a}",)
        )
        for a in pool[: len(pool) // 2]
    )
    requests = tuple(
        PaidRequest(
            f"request-{i}",
            rng.choice(pool),
            rng.getrandbits(64),
            True,
            f"done-{i}",
            tuple(
                CreditedUse(rng.choice(pool), "s", rng.randrange(1, 9), f"use-{i}")
                for _ in range(3)
            ),
        )
        for i in range(rng.randrange(0, 8))
    )
    previous = {a: rng.getrandbits(100) for a in rng.sample(pool, len(pool) // 3)}
    return statement_of(EpochInputs(parameters, workers, requests, previous))


def test_statement_roots_match_openzeppelin() -> None:
    statements = [_random_statement(seed) for seed in range(6)]
    batch = [
        {
            "values": [[line.address, str(line.cumulative)] for line in s.lines],
            "leafEncoding": list(REWARD_LEAF_ENCODING),
        }
        for s in statements
    ]
    for statement, js in zip(statements, _oz_batch(batch), strict=True):
        assert statement.root == js["root"]
        assert statement.dump() == js["dump"]
        assert [statement.proof(line.address) for line in statement.lines] == js["proofs"]
        assert StandardMerkleTree.load(js["dump"]).root == statement.root


# --- docs/rewards.md's worked example --------------------------------------------------------


def _doc_block(text: str, name: str) -> str:
    match = re.search(rf"<!-- example: {name} -->\s*```json\n(.*?)```", text, re.S)
    assert match, f"docs/rewards.md has no json block after '<!-- example: {name} -->'"
    return match.group(1)


def _doc_table(text: str, name: str) -> list[dict[str, str]]:
    match = re.search(rf"<!-- example: {name} -->\s*\n((?:\|.*\|\n)+)", text)
    assert match, f"docs/rewards.md has no table after '<!-- example: {name} -->'"
    rows = [
        [cell.strip().strip("`") for cell in row.strip("|").split("|")]
        for row in match.group(1).splitlines()
    ]
    header, _, *body = rows
    return [dict(zip(header, row, strict=True)) for row in body]


def _inputs_from_json(document: dict[str, Any]) -> EpochInputs:
    p = document["parameters"]
    parameters = RewardParameters(
        p["epoch"],
        int(p["emission"]),
        int(p["stake_cap"]),
        p["min_uptime_ppm"],
        p["protocol_share_bps"],
        p["data_share_bps"],
        p["treasury"],
    )
    workers = tuple(
        WorkerEpoch(
            w["address"],
            w["uptime_ppm"],
            int(w["lowest_stake"]),
            w["slashed"],
            tuple(w["evidence_event_ids"]),
        )
        for w in document["workers"]
    )
    requests = tuple(
        PaidRequest(
            r["request_id"],
            r["worker"],
            int(r["fee"]),
            r["paid"],
            r["completed_event_id"],
            tuple(
                CreditedUse(u["contributor"], u["source"], u["units"], u["event_id"])
                for u in r["uses"]
            ),
        )
        for r in document["requests"]
    )
    previous = {a: int(v) for a, v in document["previous_cumulative"].items()}
    return EpochInputs(parameters, workers, requests, previous)


def test_the_worked_example_in_the_docs_matches_the_code() -> None:
    text = REWARDS_DOC.read_text()
    inputs = _inputs_from_json(json.loads(_doc_block(text, "inputs")))
    rewards = compute_rewards(inputs)
    statement = build_statement(rewards, inputs.previous_cumulative)
    table = _doc_table(text, "earnings")
    assert sorted(row["address"] for row in table) == sorted(
        {*rewards.addresses(), *inputs.previous_cumulative}
    )
    for row in table:
        address = row["address"]
        earned = rewards.earned_by_kind(address)
        assert {kind: int(row[kind]) for kind in KINDS} == earned, address
        assert int(row["earned"]) == sum(earned.values()), address
        line = statement.line(address)
        assert row["cumulative"] == ("—" if line is None else str(line.cumulative)), address
    assert f"total cumulative: `{statement.total_cumulative}`" in text
    assert f"Merkle root: `{statement.root}`" in text
    assert f"statement hash: `{statement.statement_hash}`" in text
    _assert_doc_explanation(text, rewards, statement)


def _assert_doc_explanation(text: str, rewards: Rewards, statement: Statement) -> None:
    match = re.search(r"<!-- example: explain (0x[0-9a-f]{40}) -->\s*```text\n(.*?)```", text, re.S)
    assert match, "docs/rewards.md has no explain example"
    assert explain(rewards, statement, match.group(1)).render() == match.group(2)
