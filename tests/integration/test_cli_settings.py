"""Settings from the environment: a bad value is one line naming the setting, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

MASA = str(Path(sys.executable).parent / "masa")


def masa_config_show(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MASA, "config", "show", "--json"],
        env={**os.environ, "MASA_HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )


def test_the_engine_settings_for_a_gpu_node_are_read_from_the_environment(tmp_path):
    done = masa_config_show(
        tmp_path, MASA_WORKER__LLM_DTYPE="bfloat16", MASA_WORKER__LLM_MEMORY_SHARE="0.85"
    )
    assert done.returncode == 0, done.stderr
    worker = json.loads(done.stdout)["worker"]
    assert (worker["llm_dtype"], worker["llm_memory_share"]) == ("bfloat16", 0.85)


@pytest.mark.parametrize(
    ("variable", "value", "setting"),
    [
        ("MASA_WORKER__LLM_DTYPE", "fp8", "worker.llm_dtype"),
        ("MASA_WORKER__LLM_MEMORY_SHARE", "1.5", "worker.llm_memory_share"),
        ("MASA_WORKER__LLM_MEMORY_SHARE", "0", "worker.llm_memory_share"),
    ],
)
def test_a_bad_engine_setting_is_one_clear_line(tmp_path, variable, value, setting):
    done = masa_config_show(tmp_path, **{variable: value})
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and setting in lines[0], done.stderr
    assert "Traceback" not in done.stderr
