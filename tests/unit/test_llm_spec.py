"""LlmJobSpec validation and LlmOutput's derived fields; no vLLM needed."""

from __future__ import annotations

import pytest
from eth_utils.crypto import keccak
from pydantic import ValidationError

from workers.llm import ChatMessage, LlmJobSpec, LlmOutput
from workers.llm.spec import engine_request

CHAT = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
REFS = ["https://data.example.org/a", "https://data.example.org/b"]


def spec(**fields: object) -> LlmJobSpec:
    return LlmJobSpec.model_validate({"model": "tiny", "max_tokens": 8, **fields})


def test_prompt_spec_has_defaults() -> None:
    job = spec(prompt="hello")
    assert (job.temperature, job.seed, job.messages, job.data_refs) == (0.0, None, None, [])


def test_chat_spec_parses_messages() -> None:
    job = spec(messages=CHAT, data_refs=REFS)
    assert job.messages == [
        ChatMessage(role="system", content="be brief"),
        ChatMessage(role="user", content="hi"),
    ]
    assert job.data_refs == REFS


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "exactly one of prompt and messages"),
        ({"prompt": "a", "messages": CHAT}, "exactly one of prompt and messages"),
        ({"prompt": ""}, "at least 1 character"),
        ({"messages": []}, "at least 1 item"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "role"),
        ({"messages": [{"role": "user"}]}, "content"),
        ({"prompt": "a", "max_tokens": 0}, "greater than or equal to 1"),
        ({"prompt": "a", "max_tokens": 4097}, "less than or equal to 4096"),
        ({"prompt": "a", "temperature": -0.1}, "greater than or equal to 0"),
        ({"prompt": "a", "seed": "x"}, "valid integer"),
        ({"prompt": "a", "top_k": 3}, "Extra inputs are not permitted"),
        ({"prompt": "a", "model": ""}, "at least 1 character"),
    ],
)
def test_invalid_specs_are_rejected(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        spec(**fields)


def test_engine_request_carries_only_what_the_engine_reads() -> None:
    assert engine_request(spec(prompt="p", seed=3, data_refs=REFS)) == {
        "prompt": "p",
        "max_tokens": 8,
        "temperature": 0.0,
        "seed": 3,
    }
    assert engine_request(spec(messages=CHAT))["messages"] == CHAT


def test_output_units_and_digest() -> None:
    output = LlmOutput(text="héllo", prompt_tokens=5, completion_tokens=7)
    assert output.units == 12
    assert output.digest == "0x" + keccak("héllo".encode()).hex()
    assert output.model_dump()["digest"] == output.digest
