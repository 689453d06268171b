"""The real vLLM CPU engine, on a tiny model built here (no download).

Needs the venv from ``scripts/provision-vllm`` (or ``MASA_VLLM_PYTHON``); without it these
tests skip, unless ``MASA_REQUIRE_VLLM=1``, where that is a failure. One engine serves the
module: loading takes ~30-50 s on two cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from masa.errors import JobError
from tests.support.llm import count_tokens, vllm_python
from workers.llm import LlmJobSpec, VllmEngine, build_tiny_model

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]

SERVED = "tiny-llama"
PROMPT = "Workers stake tokens and earn fees."
CHAT = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def python() -> Path:
    return vllm_python()


@pytest.fixture(scope="module")
def model_dir(python: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(python, tmp_path_factory.mktemp("models") / SERVED)


@pytest.fixture(scope="module")
def engine(python: Path, model_dir: Path) -> Iterator[VllmEngine]:
    with VllmEngine(python, model_dir, served_model=SERVED, max_model_len=128) as engine:
        yield engine


def job(**fields: object) -> LlmJobSpec:
    return LlmJobSpec.model_validate({"model": SERVED, "max_tokens": 16, "seed": 7, **fields})


def test_tiny_model_build_is_reproducible(python: Path, model_dir: Path, tmp_path: Path) -> None:
    again = build_tiny_model(python, tmp_path / SERVED)
    files = sorted(path.name for path in model_dir.iterdir())
    assert "model.safetensors" in files
    assert sorted(path.name for path in again.iterdir()) == files
    assert all((again / name).read_bytes() == (model_dir / name).read_bytes() for name in files)


def test_counts_tokens(engine: VllmEngine, python: Path, model_dir: Path) -> None:
    output = engine.generate(job(prompt=PROMPT))
    assert output.prompt_tokens == count_tokens(python, model_dir, PROMPT)
    assert 1 <= output.completion_tokens <= 16
    assert output.units == output.prompt_tokens + output.completion_tokens
    assert output.digest.startswith("0x") and len(output.digest) == 66


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_same_seed_same_text(engine: VllmEngine, temperature: float) -> None:
    first = engine.generate(job(prompt=PROMPT, temperature=temperature))
    second = engine.generate(job(prompt=PROMPT, temperature=temperature))
    assert (first.text, first.completion_tokens) == (second.text, second.completion_tokens)
    assert first.digest == second.digest


def test_chat_messages_use_the_template(engine: VllmEngine, python: Path, model_dir: Path) -> None:
    output = engine.generate(job(messages=CHAT, max_tokens=8))
    rendered = "<|user|>hello there\n<|assistant|>"
    assert output.prompt_tokens == count_tokens(python, model_dir, rendered)
    assert 1 <= output.completion_tokens <= 8


def test_batching_does_not_change_greedy_text(engine: VllmEngine) -> None:
    specs = [job(prompt=f"{PROMPT} {n}", max_tokens=4 + n, seed=None) for n in range(6)]
    alone = [engine.generate(spec).text for spec in specs]
    batched = [output.text for output in engine.generate_many(specs)]
    with ThreadPoolExecutor(3) as pool:
        threaded = [output.text for output in pool.map(engine.generate, specs)]
    assert batched == alone
    assert threaded == alone


def test_bad_request_leaves_the_engine_running(engine: VllmEngine) -> None:
    pid = engine.pid()
    with pytest.raises(JobError, match="max_model_len 128") as error:
        engine.generate(job(prompt=PROMPT, max_tokens=4096))
    assert error.value.reason == "context_too_long"
    assert engine.generate(job(prompt=PROMPT)).completion_tokens >= 1
    assert engine.pid() == pid


def test_engine_killed_from_outside_is_restarted(engine: VllmEngine) -> None:
    before = engine.generate(job(prompt=PROMPT))
    pid = engine.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    after = engine.generate(job(prompt=PROMPT))
    assert engine.restarts == 1
    assert engine.pid() not in (None, pid)
    assert after.text == before.text
    assert group_members(pid) == [], "the old engine's processes outlived it"


def group_members(pgid: int, wait_s: float = 5.0) -> list[str]:
    """Live (not zombie) processes of a process group, after up to ``wait_s`` for SIGKILL
    to take effect."""
    deadline = time.monotonic() + wait_s
    while True:
        found = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True)
        alive = [pid for pid in found.stdout.split() if _state(pid) not in ("Z", "X", None)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def _state(pid: str) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def test_unloadable_model_has_a_reason(python: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    with pytest.raises(JobError) as error, VllmEngine(python, broken, load_timeout_s=300):
        pass
    assert error.value.reason == "engine_load_failed"
    assert "no-such-architecture" in error.value.detail


def test_a_model_the_engine_does_not_serve_is_refused(engine: VllmEngine) -> None:
    with pytest.raises(JobError) as error:
        engine.generate(job(prompt=PROMPT, model="some-other-model"))
    assert error.value.reason == "model_not_served"


def test_a_missing_vllm_python_or_model_is_unavailable(python: Path, tmp_path: Path) -> None:
    for engine in (
        VllmEngine(tmp_path / "nope" / "python", tmp_path),
        VllmEngine(python, tmp_path / "no-model"),
    ):
        with pytest.raises(JobError) as error:
            engine.start()
        engine.close()
        assert error.value.reason == "engine_unavailable"


def test_a_load_slower_than_its_timeout_is_stopped(python: Path, model_dir: Path) -> None:
    engine = VllmEngine(
        python, model_dir, served_model=SERVED, max_model_len=128, load_timeout_s=0.5
    )
    with pytest.raises(JobError) as error:
        engine.start()
    assert error.value.reason == "engine_load_timeout"
    assert engine.pid() is None
    engine.close()


def test_a_hung_engine_times_out_is_killed_then_replaced_and_close_stops_it(
    engine: VllmEngine,
) -> None:
    """Last in the module: it stops the shared engine (SIGSTOP freezes the real server)."""
    pid = engine.pid()
    assert pid is not None
    os.killpg(pid, signal.SIGSTOP)
    engine.request_timeout_s = 2.0
    with pytest.raises(JobError) as error:
        engine.generate(job(prompt=PROMPT))
    assert error.value.reason == "engine_timeout"
    assert engine.pid() is None
    assert group_members(pid) == [], "the hung engine's processes outlived it"

    engine.request_timeout_s = 120.0
    assert engine.generate(job(prompt=PROMPT)).completion_tokens >= 1
    replacement = engine.pid()
    assert replacement not in (None, pid)
    engine.close()
    assert group_members(replacement) == []
