"""What an LLM job returns; no vLLM here.

The request side (:class:`LlmJobSpec`, :class:`ChatMessage`) belongs to the event contract
and lives in :mod:`indexer.events.specs`; it is re-exported here for the engine's modules.
"""

from __future__ import annotations

from eth_utils.crypto import keccak
from pydantic import BaseModel, ConfigDict, Field, computed_field

from indexer.events.specs import ChatMessage, LlmJobSpec

__all__ = ["ChatMessage", "LlmJobSpec", "LlmOutput"]


class LlmOutput(BaseModel):
    """A completion, with the units billed and the digest a worker reports."""

    model_config = ConfigDict(frozen=True)

    text: str
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    finish_reason: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def units(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @computed_field  # type: ignore[prop-decorator]
    @property
    def digest(self) -> str:
        """``0x`` + keccak256 of the UTF-8 text."""
        return "0x" + keccak(self.text.encode("utf-8")).hex()
