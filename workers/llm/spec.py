"""What an LLM job returns; no vLLM here.

The request side (:class:`LlmJobSpec`, :class:`ChatMessage`) belongs to the event contract
and lives in :mod:`indexer.events.specs`; it is re-exported here for the engine's modules.
"""

from __future__ import annotations

from eth_utils.crypto import keccak
from pydantic import BaseModel, ConfigDict, Field, computed_field

from indexer.events.specs import ChatMessage, LlmJobSpec

__all__ = ["ChatMessage", "LlmJobSpec", "LlmOutput", "engine_request"]


def engine_request(spec: LlmJobSpec) -> dict[str, object]:
    """The engine server's wire format for ``spec``: the fields it reads (see
    ``workers.llm.engine_server``). The worker's concern, not the contract's."""
    request: dict[str, object] = {
        "max_tokens": spec.max_tokens,
        "temperature": spec.temperature,
        "seed": spec.seed,
    }
    if spec.prompt is not None:
        request["prompt"] = spec.prompt
    else:
        request["messages"] = [m.model_dump() for m in spec.messages or ()]
    return request


class LlmOutput(BaseModel):
    """A completion, with the units billed and the digest a worker reports."""

    model_config = ConfigDict(frozen=True)

    text: str
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    finish_reason: str | None = None

    # mypy cannot type a decorator over @property; pydantic's documented way is this ignore
    @computed_field  # type: ignore[prop-decorator]
    @property
    def units(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @computed_field  # type: ignore[prop-decorator]
    @property
    def digest(self) -> str:
        """``0x`` + keccak256 of the UTF-8 text."""
        return "0x" + keccak(self.text.encode("utf-8")).hex()
