"""Shared by the tests that run the real vLLM CPU engine."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from workers.llm import default_vllm_python, vllm_installed


def vllm_python() -> Path:
    """The vLLM venv's python; skip without it -- or fail where ``MASA_REQUIRE_VLLM=1``
    (the test command sets it when ``scripts/provision-vllm`` succeeded)."""
    python = default_vllm_python()
    if vllm_installed(python):
        return python
    venv = python.parents[1]
    failed = venv.with_name(venv.name + ".failed")
    why = f" (last attempt: {failed.read_text().strip()})" if failed.exists() else ""
    reason = f"no vLLM venv at {venv}; run scripts/provision-vllm{why}"
    if os.environ.get("MASA_REQUIRE_VLLM") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def count_tokens(python: Path, model: Path, text: str) -> int:
    """The tokenizer's own count, computed in the vLLM venv (ours has no tokenizers)."""
    code = (
        "import sys; from tokenizers import Tokenizer; "
        "print(len(Tokenizer.from_file(sys.argv[1]).encode(sys.argv[2]).ids))"
    )
    args = [str(python), "-c", code, str(model / "tokenizer.json"), text]
    return int(subprocess.run(args, check=True, capture_output=True, text=True).stdout)
