"""Compiled Masa contracts: the artifacts written by ``contracts/build.mjs``.

``load_artifact(name)`` gives a contract's ABI and bytecode without any web3 import; deployment
lives in :mod:`contracts.deploy`, transactions and reads in :mod:`contracts.client`, revert
decoding in :mod:`contracts.reverts`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

ARTIFACTS_DIR = Path(__file__).parent / "artifacts"
CONTRACT_NAMES = ("MasaToken", "NodeStaking", "RewardsDistributor")


@dataclass(frozen=True)
class Artifact:
    """What a deployment or a client needs from one compiled contract."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    sources_sha256: str


@cache
def load_artifact(name: str) -> Artifact:
    """The committed artifact of contract ``name`` (one of :data:`CONTRACT_NAMES`)."""
    if name not in CONTRACT_NAMES:
        raise KeyError(f"unknown contract {name!r}; expected one of {', '.join(CONTRACT_NAMES)}")
    data = json.loads((ARTIFACTS_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return Artifact(
        name=name,
        abi=data["abi"],
        bytecode=data["bytecode"],
        deployed_bytecode=data["deployedBytecode"],
        sources_sha256=data["sources"]["sha256"],
    )


__all__ = ["ARTIFACTS_DIR", "CONTRACT_NAMES", "Artifact", "load_artifact"]
