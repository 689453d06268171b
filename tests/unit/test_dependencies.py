"""Every third-party package our code imports is declared in pyproject.toml (not borrowed
from another package's dependencies, where an upgrade could take it away)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["masa", "indexer", "projections", "settlement", "workers", "contracts", "migrations"]
#: vLLM's environment, not the ledger's (docs/decisions.md, 20): only the engine server and
#: the tiny test model import these, in their own virtual environment.
ENGINE_ENVIRONMENT = {"vllm", "torch", "tokenizers", "transformers"}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_normal(re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0]) for r in project["dependencies"]}


def _imported() -> dict[str, str]:
    """Top-level third-party module -> one file importing it."""
    found: dict[str, str] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in PACKAGES and top not in sys.stdlib_module_names:
                        found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_every_imported_package_is_declared() -> None:
    declared, distributions = _declared(), packages_distributions()
    undeclared = {
        module: where
        for module, where in _imported().items()
        if module not in ENGINE_ENVIRONMENT
        and not any(_normal(d) in declared for d in distributions.get(module, [module]))
    }
    assert undeclared == {}, f"declare these in pyproject.toml: {undeclared}"
