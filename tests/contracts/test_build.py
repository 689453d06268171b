"""contracts/build.mjs: committed artifacts match the sources, and drift names the contract."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from contracts import CONTRACT_NAMES, load_artifact
from tests.support.fixtures import require

REPO = Path(__file__).resolve().parents[2]
SOLC = REPO / "node_modules" / "solc" / "package.json"


def run_build(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("node") is None or not SOLC.exists():
        require("node or the npm solc package is missing; run scripts/provision")
    build = root / "contracts" / "build.mjs"
    return subprocess.run(
        ["node", str(build), *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def copy_root(tmp_path: Path) -> Path:
    """A scratch copy of contracts/ beside a link to the real node_modules."""
    for part in ("src", "artifacts"):
        shutil.copytree(REPO / "contracts" / part, tmp_path / "contracts" / part)
    shutil.copy(REPO / "contracts" / "build.mjs", tmp_path / "contracts" / "build.mjs")
    (tmp_path / "node_modules").symlink_to(REPO / "node_modules")
    return tmp_path


def test_committed_artifacts_match_the_sources() -> None:
    done = run_build(REPO, "--check")
    assert done.returncode == 0, done.stderr


def test_check_names_each_contract_out_of_date(copy_root: Path) -> None:
    """--check compares the fresh compiler output byte for byte with each committed file."""
    source = copy_root / "contracts" / "src" / "RewardsDistributor.sol"
    source.write_text(source.read_text() + "\n// changed\n")
    (copy_root / "contracts" / "artifacts" / "NodeStaking.json").unlink()
    (copy_root / "contracts" / "artifacts" / "Retired.json").write_text("{}\n")
    done = run_build(copy_root, "--check")
    assert done.returncode == 1
    assert "RewardsDistributor: sources changed: src/RewardsDistributor.sol" in done.stderr
    assert "NodeStaking: no artifact" in done.stderr
    assert "Retired: artifact has no source" in done.stderr
    assert "MasaToken" not in done.stderr


def test_artifacts_load_with_abi_and_bytecode() -> None:
    for name in CONTRACT_NAMES:
        artifact = load_artifact(name)
        assert int(artifact.bytecode, 16) and int(artifact.deployed_bytecode, 16)
        assert len(artifact.sources_sha256) == 64
        assert any(entry["type"] == "error" for entry in artifact.abi)
    with pytest.raises(KeyError):
        load_artifact("ERC20")
