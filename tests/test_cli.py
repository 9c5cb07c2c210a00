"""The `steward` command line: migrations, policy checks, start-up refusals and the sweep, as users see them.

Each test runs in its own empty working directory with Steward's environment variables cleared, so
no `.env`, `.steward` or shell setting of the developer's leaks in.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from sqlalchemy import inspect

from steward.cli import main
from tests.conftest import STEWARD_VARIABLES
from workflows.db import make_engine
from workflows.policy import default_policy_text, parse_policy
from workflows.schema import head_revision

UNREACHABLE_DATABASE = "postgresql://postgres@127.0.0.1:1/none"
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def isolated(cli_home: Path) -> Path:
    """Every test here runs in an empty working directory with none of Steward's variables set."""
    return cli_home


@pytest.fixture
def sqlite_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """DATABASE_URL set to a SQLite file that does not exist yet."""
    url = f"sqlite:///{(tmp_path / 'cli.db').as_posix()}"
    monkeypatch.setenv("DATABASE_URL", url)
    return url


def steward(*args: str) -> Result:
    """Run `steward <args>` in-process, stdout and stderr kept apart."""
    return CliRunner().invoke(main, list(args), catch_exceptions=True)


def assert_one_line_error(result: Result, *expected: str) -> str:
    """A non-zero exit, one "Error:" line on stderr that says all of `expected`, and no traceback."""
    assert result.exit_code != 0, result.output
    # CliRunner catches what the command lets escape; only a clean exit counts.
    assert isinstance(result.exception, SystemExit), result.exc_info
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for words in expected:
        assert words in errors[0], errors[0]
    return errors[0]


def table_names(url: str) -> set[str]:
    """Tables in the database at `url`, Alembic's bookkeeping table excluded."""
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


# ---- db ------------------------------------------------------------------------------------------


def _upgrade_current_downgrade(url: str) -> None:
    head = head_revision()

    result = steward("db", "current")
    assert result.exit_code == 0, result.output
    assert "empty" in result.stdout and "steward db upgrade" in result.stdout

    result = steward("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"database at revision {head}"
    assert {"asset", "edge", "decision_log", "outboxmessage"} <= table_names(url)

    result = steward("db", "current")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == head

    result = steward("db", "upgrade")  # a second upgrade is a no-op
    assert result.exit_code == 0 and result.stdout.strip() == f"database at revision {head}"

    result = steward("db", "downgrade", "base")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "database at revision base"
    assert table_names(url) == set()
    assert "empty" in steward("db", "current").stdout


def test_db_upgrade_current_and_downgrade_on_a_fresh_sqlite_file(sqlite_url):
    _upgrade_current_downgrade(sqlite_url)


def test_db_upgrade_current_and_downgrade_on_a_fresh_postgresql_database(fresh_postgres_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", fresh_postgres_url)
    _upgrade_current_downgrade(fresh_postgres_url)


def test_without_database_url_the_sqlite_file_lives_under_steward_home(isolated):
    result = steward("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert (isolated / "home" / "steward.db").is_file()


def test_an_unreachable_database_is_one_line_and_no_traceback(isolated):
    """A real process, so nothing (not even a logged stack trace) can hide in CliRunner."""
    env = {key: value for key, value in os.environ.items() if key not in STEWARD_VARIABLES}
    env.update(DATABASE_URL=UNREACHABLE_DATABASE, STEWARD_HOME=str(isolated / "home"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])))
    completed = subprocess.run([sys.executable, "-m", "steward", "db", "upgrade"], cwd=isolated, env=env,
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode != 0
    assert "Traceback" not in completed.stderr and "Traceback" not in completed.stdout
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith("Error: cannot reach the database"), lines[0]


def test_db_current_on_an_unreachable_database_is_one_line(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", UNREACHABLE_DATABASE)
    assert_one_line_error(steward("db", "current"), "cannot reach the database")


# ---- policy --------------------------------------------------------------------------------------


def test_policy_check_accepts_the_default_policy():
    result = steward("policy", "check")
    assert result.exit_code == 0, result.output
    assert "default policy: ok" in result.stdout and result.stderr == ""


def test_policy_show_default_prints_a_valid_policy_that_check_accepts(isolated):
    result = steward("policy", "show-default")
    assert result.exit_code == 0, result.output
    assert result.stdout == default_policy_text()
    policy = parse_policy(result.stdout)
    assert set(policy.tiers) == {"minimal", "limited", "high", "prohibited"}
    (isolated / "policy.yaml").write_text(result.stdout, encoding="utf-8")
    checked = steward("policy", "check", "policy.yaml")
    assert checked.exit_code == 0, checked.output
    assert checked.stdout.startswith("policy.yaml: ok")


def _default_with(change) -> str:
    data = yaml.safe_load(default_policy_text())
    change(data)
    return yaml.safe_dump(data)


BAD_POLICIES = {
    "unknown top-level key": (lambda: _default_with(lambda d: d.update(colour="red")),
                              "unknown key 'colour'"),
    "unknown nested key": (lambda: _default_with(lambda d: d["tiers"]["high"].update(sla_days=3)),
                           "unknown key 'tiers.high.sla_days'"),
    "unknown tier": (lambda: _default_with(lambda d: d["tiers"].update(extreme=d["tiers"]["high"])),
                     "unknown tier 'extreme'"),
    "unknown group": (lambda: _default_with(lambda d: d.update(admin_group="wizards")),
                      "unknown group 'wizards'"),
    "bad yaml": (lambda: "groups: [admins\ntiers: {\n", "not valid YAML"),
}


@pytest.mark.parametrize("case", list(BAD_POLICIES))
def test_policy_check_names_what_is_wrong_in_one_line(case, isolated):
    make_text, expected = BAD_POLICIES[case]
    (isolated / "policy.yaml").write_text(make_text(), encoding="utf-8")
    error = assert_one_line_error(steward("policy", "check", "policy.yaml"), expected)
    assert "policy.yaml" in error


def test_policy_check_of_a_missing_file_is_one_line():
    assert_one_line_error(steward("policy", "check", "nowhere.yaml"), "nowhere.yaml", "cannot read")


def test_policy_check_reads_steward_policy_when_no_path_is_given(isolated, monkeypatch):
    (isolated / "mine.yaml").write_text(_default_with(lambda d: d.update(bogus=1)), encoding="utf-8")
    monkeypatch.setenv("STEWARD_POLICY", "mine.yaml")
    assert_one_line_error(steward("policy", "check"), "mine.yaml", "unknown key 'bogus'")


# ---- serve ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("present, missing", [
    ({}, ["SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"]),
    ({"SLACK_SIGNING_SECRET": "s3cret"}, ["SLACK_BOT_TOKEN"]),
    ({"SLACK_BOT_TOKEN": "xoxb-secret-token"}, ["SLACK_SIGNING_SECRET"]),
])
def test_serve_without_slack_credentials_names_the_missing_variables(present, missing, sqlite_url,
                                                                     monkeypatch):
    for name, value in present.items():
        monkeypatch.setenv(name, value)
    error = assert_one_line_error(steward("serve", "--host", "127.0.0.1", "--port", "1"), *missing)
    for name in present:
        assert name not in error
    assert "xoxb-secret-token" not in error and "s3cret" not in error


def test_serve_on_an_unmigrated_database_says_to_run_db_upgrade(sqlite_url, monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "secret")
    assert_one_line_error(steward("serve", "--host", "127.0.0.1", "--port", "1"), "steward db upgrade")


def test_serve_on_an_unreachable_database_is_one_line(monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "secret")
    monkeypatch.setenv("DATABASE_URL", UNREACHABLE_DATABASE)
    assert_one_line_error(steward("serve", "--host", "127.0.0.1", "--port", "1"), "cannot reach the database")


# ---- sweep ---------------------------------------------------------------------------------------


def test_sweep_dry_run_on_an_empty_outbox_reports_nothing_due(sqlite_url):
    assert steward("db", "upgrade").exit_code == 0
    result = steward("sweep", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "0 outbox message(s) due" in result.stdout


def test_sweep_on_an_unmigrated_database_says_to_run_db_upgrade(sqlite_url):
    assert_one_line_error(steward("sweep", "--dry-run"), "steward db upgrade")
