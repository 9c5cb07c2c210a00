"""Every third-party module the product imports is a declared runtime dependency, not one the tests happen
to install: a fresh `pip install .` (what `scripts/run` does) must be enough to run every command."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("steward", "bot", "workers", "workflows")


def imported_top_level_modules() -> set[str]:
    """Top-level names of every module imported anywhere in the product (inside functions too)."""
    names: set[str] = set()
    for package in PRODUCT:
        for path in (REPO_ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names


def declared_distributions() -> set[str]:
    """The runtime dependencies in pyproject.toml, normalised as pip compares names."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {_normalise(re.split(r"[\s\[<>=!~;]", spec, maxsplit=1)[0]) for spec in project["dependencies"]}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_third_party_import_is_a_runtime_dependency():
    third_party = imported_top_level_modules() - set(sys.stdlib_module_names) - set(PRODUCT) - {"__future__"}
    providers = packages_distributions()
    declared = declared_distributions()
    undeclared = {module: providers.get(module, ["?"]) for module in third_party
                  if not {_normalise(d) for d in providers.get(module, [])} & declared}
    assert undeclared == {}, f"imported by the product but not in [project.dependencies]: {undeclared}"
