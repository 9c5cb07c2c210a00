"""`steward report` as users run it: the terminal summary and `--html FILE`.

The database is the known one of tests/report_seed.py, seeded relative to the real clock (the command
reads it), on its own migrated SQLite file.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from steward.cli import main
from tests.report_seed import CLEAN, FAILING, seed_report

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(autouse=True)
def isolated(cli_home: Path) -> Path:
    """Every test here runs in an empty working directory with none of Steward's variables set."""
    return cli_home




def seeded_at(engine, policy, offset: timedelta) -> None:
    """Seed so that the real clock now is t0 + offset."""
    seed_report(engine, policy=policy, t0=datetime.now(UTC) - offset)


def steward(*args: str, color: bool = False) -> Result:
    """Run `steward <args>` in-process."""
    return CliRunner().invoke(main, list(args), catch_exceptions=True, color=color)


def test_terminal_report_is_plain_aligned_text(cli_engine, policy):
    seeded_at(cli_engine, policy, CLEAN)
    result = steward("report")
    assert result.exit_code == 0, result.output
    out = result.output
    assert not ANSI.search(out), "no colour codes when stdout is not a terminal"
    assert "Inventory: 9 assets, 4 unclassified, 1 AI system(s) not classified" in out
    assert "Reviews: 7 on time, 1 due within 14 days, 1 overdue" in out
    assert "Missing documentation: 3 high or limited asset(s)" in out
    assert re.search(r"Time to decision\s+median 3h 00m, 95th percentile 5h 00m \(5 decided\)", out)
    assert re.search(r"Expired undecided\s+1\n", out)
    assert re.search(r"Emergency grants\s+2, 1 reviewed, 1 not reviewed", out)
    assert "Grants past expiry, not revoked: 0 (OK)" in out
    assert re.search(r"Active grants\s+High 1, Limited 0, Minimal 1, Unclassified 4 \(total 6\)", out)
    # The inventory table's columns line up: every row is as wide as its header.
    lines = out.splitlines()
    start = lines.index(next(line for line in lines if line.strip().startswith("Kind")))
    table = lines[start:start + 8]  # the header, six kinds and the total
    assert len({len(line) for line in table}) == 1, table
    assert re.search(r"Dataset\s+0\s+0\s+0\s+1\s+2\s+3$", out, re.MULTILINE)


def test_terminal_report_colours_only_on_a_terminal(cli_engine, policy):
    seeded_at(cli_engine, policy, FAILING)
    result = steward("report", color=True)
    assert result.exit_code == 0
    assert "\x1b[31m" in result.output  # the failure in red
    assert "FAILURE: 3 grants past expiry but not revoked (must be 0)" in ANSI.sub("", result.output)


def test_html_report_is_written_to_the_file(cli_engine, policy, tmp_path):
    seeded_at(cli_engine, policy, FAILING)
    target = tmp_path / "report.html"
    result = steward("report", "--html", str(target))
    assert result.exit_code == 0, result.output
    assert f"wrote {target}" in result.output
    page = target.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert 'id="failure-banner"' in page and "FAILURE: 3 grants past expiry" in page
    assert "<svg" in page and 'id="chart-inventory"' in page and 'id="chart-grants"' in page
    assert not re.search(r"https?://", page)
    assert not list(tmp_path.glob(".report.html.*.tmp"))


def test_report_refuses_an_unmigrated_database(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{(tmp_path / 'empty.db').as_posix()}")
    result = steward("report")
    assert result.exit_code == 1
    assert "run `steward db upgrade` first" in result.output


def test_report_html_into_a_missing_directory_is_one_line(cli_engine, tmp_path):
    result = steward("report", "--html", str(tmp_path / "nowhere" / "report.html"))
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot write the report")


def test_the_readme_sample_is_what_the_seeded_database_gives(sqlite_engine, policy):
    from tests.conftest import FIXED_NOW
    from workflows.db import transaction
    from workflows.report import gather
    from workflows.report_render import render_text

    seed_report(sqlite_engine, policy=policy, t0=FIXED_NOW)
    with transaction(sqlite_engine) as session:
        sample = render_text(gather(session, FIXED_NOW + CLEAN, policy))
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert f"```text\n{sample}```" in readme
