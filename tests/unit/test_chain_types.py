"""Chain event payloads mirror the contracts' events 1:1 (names and field order)."""

import re

from contracts import CONTRACT_NAMES, load_artifact
from indexer.events import CHAIN_TYPES, EVENT_TYPES

SOLIDITY_TO_FIELD = {"address": "Address", "bytes32": "Hash32", "uint8": "int"}


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def abi_events() -> dict[str, list[dict]]:
    events = {}
    for contract in CONTRACT_NAMES:
        for item in load_artifact(contract).abi:
            if (
                item["type"] == "event"
                and item["name"] not in ("Transfer", "Approval", "EIP712DomainChanged")
                and not item["name"].startswith("Role")
            ):
                events[item["name"]] = item["inputs"]
    return events


def test_every_contract_event_has_a_chain_event_type_with_the_same_fields():
    events = abi_events()
    assert set(events) == set(CHAIN_TYPES)
    for name, inputs in events.items():
        model = EVENT_TYPES[(name, 1)].payload
        fields = [f for f in model.model_fields if f != "log"]
        assert fields == [snake(i["name"]) for i in inputs], name
