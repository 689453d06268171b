"""LLM jobs: the request spec, its output, and the vLLM engine behind a process boundary."""

from workers.llm.engine import VllmEngine, build_tiny_model, default_vllm_python, vllm_installed
from workers.llm.spec import ChatMessage, LlmJobSpec, LlmOutput

__all__ = [
    "ChatMessage",
    "LlmJobSpec",
    "LlmOutput",
    "VllmEngine",
    "build_tiny_model",
    "default_vllm_python",
    "vllm_installed",
]
