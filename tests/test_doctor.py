"""`steward doctor` against the sandbox Slack and real databases: all green, then each failure with its fix.

Each test starts from a healthy installation (a migrated SQLite file, the test Redis as broker, the
sandbox Slack with a valid bot token and every scope) and breaks one thing. Secrets are given
recognisable values so the tests can prove none of them is ever printed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from bot.scopes import BOT_SCOPES
from steward.cli import main
from steward.sandbox.slack_api import FakeSlack
from workflows.db import make_engine
from workflows.schema import head_revision, upgrade_database

REPO_ROOT = Path(__file__).resolve().parents[1]
CHECKS = ["configuration", "database", "broker", "slack token", "scopes", "policy"]
BOT_TOKEN = "xoxb-1111-2222-doctorbottoken"
SIGNING_SECRET = "doctor-signing-secret-0123456789"
APP_TOKEN = "xapp-1-A0001-doctorapptoken"
DB_PASSWORD = "doctor-db-passw0rd"
BROKER_PASSWORD = "doctor-broker-passw0rd"
SECRETS = (BOT_TOKEN, SIGNING_SECRET, APP_TOKEN, DB_PASSWORD, BROKER_PASSWORD)
CLOSED_PORT = 1  # nothing listens on port 1 of the loopback interface


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    """The sandbox Slack, accepting BOT_TOKEN."""
    with FakeSlack() as slack:
        slack.valid_tokens.add(BOT_TOKEN)
        yield slack


@pytest.fixture(autouse=True)
def healthy(cli_engine, redis_url: str, fake: FakeSlack, monkeypatch: pytest.MonkeyPatch) -> None:
    """A working installation: migrated SQLite (cli_engine), Redis broker, sandbox Slack, HTTP mode."""
    monkeypatch.setenv("BROKER_URL", redis_url)
    monkeypatch.setenv("SLACK_API_URL", fake.url)
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SIGNING_SECRET)


def doctor() -> Result:
    """Run `steward doctor` in-process with a short timeout."""
    return CliRunner().invoke(main, ["doctor", "--timeout", "2"])


def lines(result: Result, check: str) -> list[str]:
    """The report lines of one check."""
    return [line for line in result.output.splitlines() if line[2:].startswith(f"{check}: ")]


def assert_fails(result: Result, check: str, *words: str) -> str:
    """Exit 1, and one ✗ line for `check` that says all of `words` and what to do (after " — ")."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exc_info
    failed = [line for line in lines(result, check) if line.startswith("✗ ")]
    assert len(failed) == 1, result.output
    fix = failed[0].partition(" — ")[2]
    assert fix.strip(), f"no fix given: {failed[0]}"
    for word in words:
        assert word in failed[0], failed[0]
    assert_no_secrets(result)
    return failed[0]


def assert_no_secrets(result: Result) -> None:
    """None of the secret values appears anywhere doctor wrote."""
    for secret in SECRETS:
        assert secret not in result.output, f"a secret leaked into: {result.output}"


def test_all_green_on_a_healthy_installation(fake: FakeSlack):
    result = doctor()

    assert result.exit_code == 0, result.output
    report = result.output.splitlines()
    assert [line[2:].split(":")[0] for line in report[:-1]] == CHECKS
    assert all(line.startswith("✓ ") for line in report[:-1]), result.output
    assert report[-1] == "All checks passed."
    assert "HTTP mode" in lines(result, "configuration")[0]
    assert f"schema at {head_revision()}" in lines(result, "database")[0]
    assert "redis" in lines(result, "broker")[0]
    assert "@steward" in lines(result, "slack token")[0] and "T0001" in lines(result, "slack token")[0]
    assert [call.token for call in fake.calls_to("auth.test")] == [BOT_TOKEN]
    assert_no_secrets(result)


def test_all_green_on_migrated_postgresql_in_socket_mode(fresh_postgres_url: str,
                                                         monkeypatch: pytest.MonkeyPatch):
    engine = make_engine(fresh_postgres_url)
    try:
        upgrade_database(engine)
    finally:
        engine.dispose()
    monkeypatch.setenv("DATABASE_URL", fresh_postgres_url)
    monkeypatch.setenv("SLACK_APP_TOKEN", APP_TOKEN)

    result = doctor()

    assert result.exit_code == 0, result.output
    assert "Socket Mode" in lines(result, "configuration")[0]
    assert lines(result, "database")[0].startswith("✓ database: postgresql answers")
    assert_no_secrets(result)


def test_an_unreachable_database_is_named_without_its_password(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DATABASE_URL", f"postgresql://steward:{DB_PASSWORD}@127.0.0.1:{CLOSED_PORT}/steward")

    line = assert_fails(doctor(), "database", "check DATABASE_URL")

    assert "upgrade" not in line  # the schema cannot be judged on a database that is not there


def test_an_empty_database_says_to_run_the_migrations(cli_home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{(cli_home / 'empty.db').as_posix()}")

    assert_fails(doctor(), "database", "empty", head_revision(), "run `steward db upgrade`")


def test_an_unreachable_broker_is_named_without_its_password(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BROKER_URL", f"redis://:{BROKER_PASSWORD}@127.0.0.1:{CLOSED_PORT}/0")

    result = doctor()

    assert_fails(result, "broker", "check BROKER_URL")
    assert lines(result, "database")[0].startswith("✓ ")  # one failure does not hide the other checks


@pytest.mark.parametrize(("error", "fix"), [
    ("invalid_auth", "Bot User OAuth Token"),
    ("account_inactive", "reinstall the app"),
    ("not_authed", "set SLACK_BOT_TOKEN"),
])
def test_a_token_slack_refuses_says_what_to_do(fake: FakeSlack, error: str, fix: str):
    fake.fail_next("auth.test", error=error)

    result = doctor()

    assert_fails(result, "slack token", f"auth.test answered {error}", fix)
    assert lines(result, "scopes") == ["- scopes: skipped: auth.test failed"]


def test_an_unknown_token_is_invalid_auth(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-9999-not-a-token-slack-knows")

    assert_fails(doctor(), "slack token", "invalid_auth", "SLACK_BOT_TOKEN")


def test_slack_unavailable_is_not_blamed_on_the_token(fake: FakeSlack):
    fake.fail_next("auth.test", status=503)

    assert_fails(doctor(), "slack token", "HTTP 503", "try again")


def test_slack_unreachable_fails_fast(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SLACK_API_URL", f"http://127.0.0.1:{CLOSED_PORT}/api/")

    assert_fails(doctor(), "slack token", "cannot reach Slack at http://127.0.0.1:1/api/", "SLACK_API_URL")


def test_missing_scopes_are_named(fake: FakeSlack):
    fake.grant_scopes([scope for scope in BOT_SCOPES if scope not in ("files:write", "im:write")])

    line = assert_fails(doctor(), "scopes", "im:write, files:write",
                        "add them under OAuth & Permissions", "reinstall the app")

    assert "chat:write" not in line


def test_extra_scopes_are_fine(fake: FakeSlack):
    fake.grant_scopes([*BOT_SCOPES, "channels:read"])

    assert doctor().exit_code == 0


def test_a_bad_policy_file_names_the_key(cli_home: Path, monkeypatch: pytest.MonkeyPatch):
    policy = cli_home / "policy.yaml"
    policy.write_text("tiers: {}\nsurprise: 1\n", encoding="utf-8")
    monkeypatch.setenv("STEWARD_POLICY", str(policy))

    assert_fails(doctor(), "policy", "unknown key 'surprise'", "steward policy check")


def test_a_webhook_connector_without_its_secret_is_reported(cli_home: Path, monkeypatch: pytest.MonkeyPatch):
    from workflows.policy import default_policy_text

    data = yaml.safe_load(default_policy_text())
    data["connectors"] = {"iam": {"type": "webhook", "url": "https://iam.example.com/hook",
                                  "secret_env": "STEWARD_DOCTOR_TEST_SECRET"}}
    policy = cli_home / "policy.yaml"
    policy.write_text(yaml.safe_dump(data), encoding="utf-8")
    monkeypatch.setenv("STEWARD_POLICY", str(policy))
    monkeypatch.delenv("STEWARD_DOCTOR_TEST_SECRET", raising=False)

    assert_fails(doctor(), "policy", "STEWARD_DOCTOR_TEST_SECRET", "connector 'iam'", "steward worker")

    monkeypatch.setenv("STEWARD_DOCTOR_TEST_SECRET", "set")
    assert doctor().exit_code == 0


def test_a_missing_signing_secret_is_named(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("SLACK_SIGNING_SECRET")

    assert_fails(doctor(), "configuration", "SLACK_SIGNING_SECRET", "Basic Information")


def test_without_a_bot_token_the_slack_checks_are_skipped(fake: FakeSlack, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("SLACK_BOT_TOKEN")

    result = doctor()

    assert_fails(result, "configuration", "SLACK_BOT_TOKEN is not set")
    assert lines(result, "slack token") == ["- slack token: skipped: no SLACK_BOT_TOKEN"]
    assert lines(result, "scopes") == ["- scopes: skipped: no SLACK_BOT_TOKEN"]
    assert fake.calls_to("auth.test") == []


def test_an_app_token_in_the_bot_token_variable_is_caught(fake: FakeSlack, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", APP_TOKEN)

    result = doctor()

    assert_fails(result, "configuration", "app-level token", "move it to SLACK_APP_TOKEN")
    assert fake.calls_to("auth.test") == []  # an app token is never sent where a bot token belongs


def test_every_problem_is_reported_in_one_run(cli_home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("SLACK_SIGNING_SECRET")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{(cli_home / 'empty.db').as_posix()}")
    monkeypatch.setenv("BROKER_URL", f"redis://:{BROKER_PASSWORD}@127.0.0.1:{CLOSED_PORT}/0")

    result = doctor()

    assert result.exit_code == 1
    marks = {line[2:].split(":")[0]: line[0] for line in result.output.splitlines()[:-1]}
    assert marks == {"configuration": "✗", "database": "✗", "broker": "✗", "slack token": "✓",
                     "scopes": "✓", "policy": "✓"}
    assert result.output.splitlines()[-1] == "3 problem(s) found."
    assert_no_secrets(result)


def test_the_manifest_asks_for_exactly_the_scopes_doctor_checks():
    manifest = yaml.safe_load((REPO_ROOT / "slack-manifest.yml").read_text(encoding="utf-8"))

    assert sorted(manifest["oauth_config"]["scopes"]["bot"]) == sorted(BOT_SCOPES)
