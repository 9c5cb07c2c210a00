"""The hostile-input suite's fixtures: the signed-request harness with the matrix's cast of people and
policy, and the figures the suite prints at the end and writes to bench/results/reliability.json."""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from steward.sandbox.slack_api import FakeSlack
from tests.bot.conftest import harness  # noqa: F401 - the signed-request harness, with the fixtures below
from tests.security.scenario import CAST, security_policy_data
from workflows.policy import Policy, parse_policy

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "reliability.json"
SECTION = "security"
# What this session tried: {suite (the test module, "test_" dropped): {figure: count}}.
FIGURES: defaultdict[str, Counter[str]] = defaultdict(Counter)


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    """The fake Slack Web API with every person of the matrix in it (the deactivated one `deleted`)."""
    with FakeSlack() as slack:
        for person in CAST:
            slack.add_user(person.user_id, name=person.name, deleted=person.deactivated)
        yield slack


@pytest.fixture
def bot_policy() -> Policy:
    """The matrix's policy: two single-person approval steps, admins, governance and a fallback group."""
    return parse_policy(yaml.safe_dump(security_policy_data()))


@pytest.fixture
def figures(request) -> Counter[str]:
    """The calling suite's counts of what it tried; printed and written to the results file at the end."""
    return FIGURES[request.module.__name__.rpartition(".")[2].removeprefix("test_")]


def pytest_terminal_summary(terminalreporter) -> None:
    """Print the suites' figures and write them into bench/results/reliability.json."""
    if not FIGURES:
        return
    terminalreporter.section("security figures")
    for suite, counts in sorted(FIGURES.items()):
        terminalreporter.write_line(f"{suite}: " + ", ".join(f"{name} {n}" for name, n in sorted(counts.items())))
    write_figures(RESULTS, {suite: dict(counts) for suite, counts in FIGURES.items()})


def write_figures(path: Path, figures: dict[str, dict[str, int]]) -> None:
    """Write each suite's figures under the file's "security" key, replacing that suite's last figures and
    keeping every other suite and every other key (the chaos suite writes its own)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    section = data.get(SECTION) if isinstance(data.get(SECTION), dict) else {}
    data[SECTION] = {**section, **figures}
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole then renamed, so the chaos suite writing its own key never reads half a file.
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, delete=False, suffix=".tmp") as tmp:
        json.dump(data, tmp, indent=2, sort_keys=True)
        tmp.write("\n")
    os.replace(tmp.name, path)
