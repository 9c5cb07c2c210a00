"""Logs: JSON lines (or text) on stderr, tagged with the request or task id, and never a secret: not in the
message, its arguments, a traceback, an uncaught exception, nor slack_sdk's DEBUG logs of its requests."""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from celery.app.log import Logging as CeleryLogging
from celery.utils.log import LoggingProxy
from click.testing import CliRunner

from steward.cli import main
from steward.sandbox.slack_api import FakeSlack
from tests.bot.conftest import bot_policy, fake, harness  # noqa: F401 - fixtures used below
from tests.test_metrics import instrumented, sample
from tests.workers.conftest import fresh_celery  # noqa: F401 - fixture used below
from workers import logs
from workers.celery_app import make_celery
from workers.logs import REDACTED, Redactor, configure_logging
from workers.slack_client import make_slack_client
from workflows.errors import InvalidInput
from workflows.policy import default_policy_text, parse_policy
from workflows.settings import Settings

BOT_TOKEN = "xoxb-1111-2222-botsecretvalue"
APP_TOKEN = "xapp-1-A0001-3333-appsecretvalue"
SIGNING_SECRET = "8f14e45fceea167a5a36dedd4bea2543"
DB_PASSWORD = "pg-p@ss/word"  # percent-encoded in the URL
BROKER_PASSWORD = "redis-secret-9"
WEBHOOK_SECRET = "whsec-test-0d1e2f"
SECRETS = (BOT_TOKEN, APP_TOKEN, SIGNING_SECRET, DB_PASSWORD, BROKER_PASSWORD, WEBHOOK_SECRET)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Whatever configure_logging changes in this process is put back after the test."""
    root = logging.getLogger()
    handlers, level, hooks = list(root.handlers), root.level, (sys.excepthook, threading.excepthook)
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
        for each in [f for f in handler.filters if isinstance(f, Redactor)]:
            handler.removeFilter(each)
    root.setLevel(level)
    sys.excepthook, threading.excepthook = hooks
    logging.captureWarnings(False)


def secret_settings(**overrides: Any) -> Settings:
    """Settings holding every kind of secret Steward is configured with."""
    values: dict[str, Any] = {
        "slack_bot_token": BOT_TOKEN, "slack_app_token": APP_TOKEN, "slack_signing_secret": SIGNING_SECRET,
        "database_url": "postgresql://steward:pg-p%40ss%2Fword@db.internal:5432/steward",
        "broker_url": f"redis://:{BROKER_PASSWORD}@redis.internal:6379/0", "log_level": "DEBUG", **overrides}
    return Settings(_env_file=None, **values)


def webhook_policy():
    """The default policy with a webhook connector whose secret lives in STEWARD_IAM_SECRET."""
    data = yaml.safe_load(default_policy_text())
    data["connectors"] = {"iam": {"type": "webhook", "url": "https://iam.example.com/hook",
                                  "secret_env": "STEWARD_IAM_SECRET"}}
    return parse_policy(yaml.safe_dump(data))


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of `text` parsed as JSON (each must be an object)."""
    parsed = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all(isinstance(entry, dict) for entry in parsed)
    return parsed


@pytest.fixture
def configured(restore_logging, capsys) -> Settings:
    """JSON logging at DEBUG with every kind of secret configured (the webhook secret through the policy)."""
    settings = secret_settings()
    configure_logging(settings, policy=webhook_policy(), environ={"STEWARD_IAM_SECRET": WEBHOOK_SECRET})
    capsys.readouterr()
    return settings


def test_each_line_is_a_json_object_with_the_fields_a_collector_needs(configured, capsys):
    logging.getLogger("steward.test").info("hello %s", "world")

    (entry,) = json_lines(capsys.readouterr().err)
    assert entry["message"] == "hello world" and entry["level"] == "INFO" and entry["logger"] == "steward.test"
    assert entry["timestamp"].endswith("+00:00")
    assert "request_id" not in entry and "task_id" not in entry, "no ids outside a request or task"


def test_secrets_are_redacted_in_messages_arguments_and_tracebacks(configured, capsys):
    log = logging.getLogger("steward.test")
    for secret in SECRETS:
        log.warning("configured: " + secret)
        log.warning("as an argument: %s", secret)
    try:
        raise RuntimeError(f"token {BOT_TOKEN} and password {DB_PASSWORD} rejected")
    except RuntimeError:
        log.exception("it failed with %r", {"webhook": WEBHOOK_SECRET})
    log.info("Slack-shaped tokens nobody configured: xoxp-9-8-7-abc xoxe-1-refreshabc xapp-1-XYZ-1-zz")
    log.info("a URL with credentials: amqp://guest:hunter2hunter2@mq.internal:5672//")

    output = capsys.readouterr().err
    for secret in (*SECRETS, "xoxp-9-8-7-abc", "xoxe-1-refreshabc", "xapp-1-XYZ-1-zz", "hunter2hunter2",
                   "pg-p%40ss%2Fword"):
        assert secret not in output, f"{secret} leaked"
    entries = json_lines(output)
    assert entries[0]["message"] == f"configured: {REDACTED}"
    failure = next(e for e in entries if e["message"].startswith("it failed"))
    assert failure["message"] == f"it failed with {{'webhook': '{REDACTED}'}}"
    assert "RuntimeError: token [redacted] and password [redacted] rejected" in failure["exception"]
    assert entries[-1]["message"] == f"a URL with credentials: amqp://guest:{REDACTED}@mq.internal:5672//"


def test_an_uncaught_exception_in_a_thread_is_logged_redacted(configured, capsys):
    def fail() -> None:
        raise ValueError(f"bad token {BOT_TOKEN}")

    thread = threading.Thread(target=fail, name="doomed")
    thread.start()
    thread.join()

    output = capsys.readouterr().err
    assert BOT_TOKEN not in output
    (entry,) = json_lines(output)
    assert entry["level"] == "CRITICAL" and "doomed" in entry["message"]
    assert f"ValueError: bad token {REDACTED}" in entry["exception"]


def test_slack_sdk_debug_logs_of_a_call_never_show_the_token(restore_logging, capsys):
    with FakeSlack() as slack:
        slack.valid_tokens.add(BOT_TOKEN)
        settings = secret_settings(slack_api_url=slack.url)
        configure_logging(settings, policy=None, environ={})
        client = make_slack_client(settings, sleep=lambda seconds: None)

        client.chat_postMessage(channel="C1", text="hello")
        client.auth_test(token=BOT_TOKEN)  # the token as an argument, which slack_sdk may log as a parameter

    output = capsys.readouterr().err
    entries = json_lines(output)
    assert any(e["logger"].startswith("slack_sdk") and "Sending a request" in e["message"] for e in entries)
    assert BOT_TOKEN not in output


def test_lines_logged_while_handling_a_request_carry_its_id(harness, restore_logging, capsys):
    configure_logging(Settings(_env_file=None, log_level="DEBUG"), policy=None, environ={})
    bot = instrumented(harness, production=True)
    ids = []
    for _ in range(2):
        capsys.readouterr()
        handled = sample("steward_request_seconds_count", listener="command:register")
        assert bot.command("register dataset").status == 200
        # The modal opens on another thread, after the ack; the request is counted once that work is
        # done, its last line logged (the fake Slack sees views.open before the client logs the answer).
        for _ in range(200):
            if sample("steward_request_seconds_count", listener="command:register") > handled:
                break
            threading.Event().wait(0.05)
        entries = json_lines(capsys.readouterr().err)
        request_ids = {e.get("request_id") for e in entries}
        assert len(request_ids) == 1 and None not in request_ids, "every line of the request, one id"
        # The Web API call happened on the listener's thread, and still carries the request's id.
        assert any(e["logger"].startswith("slack_sdk") and "views.open" in e["message"] for e in entries)
        ids.append(request_ids.pop())
    assert ids[0] != ids[1], "each request its own id"


def test_lines_logged_in_a_task_carry_its_id(restore_logging, capsys, tmp_path, fresh_celery):
    settings = Settings(_env_file=None, steward_home=tmp_path / "home")
    configure_logging(settings, policy=None, environ={})
    app = make_celery(settings)

    @app.task(name="steward.test_noisy")
    def noisy() -> None:
        logging.getLogger("steward.test").warning("inside the task")

    capsys.readouterr()
    result = noisy.apply()
    logging.getLogger("steward.test").warning("after the task")

    entries = json_lines(capsys.readouterr().err)
    inside = next(e for e in entries if e["message"] == "inside the task")
    after = next(e for e in entries if e["message"] == "after the task")
    assert inside["task_id"] == result.id
    assert "task_id" not in after, "the id is cleared when the task ends"


def test_celery_leaves_the_configured_logging_alone(restore_logging, tmp_path, fresh_celery, monkeypatch):
    monkeypatch.setattr(CeleryLogging, "_setup", False)
    settings = Settings(_env_file=None, steward_home=tmp_path / "home")
    handler = configure_logging(settings, policy=None, environ={})
    app = make_celery(settings)
    before = list(logging.getLogger().handlers)

    app.log.setup(loglevel="INFO", redirect_stdouts=True)  # what a worker does as it starts

    assert logging.getLogger().handlers == before and handler in before
    assert not isinstance(sys.stdout, LoggingProxy), "print() is not turned into unformatted log lines"


def test_text_format_names_the_ids(restore_logging, capsys):
    configure_logging(Settings(_env_file=None, log_format="text"), policy=None, environ={})
    token = logs.REQUEST_ID.set("abc123")
    try:
        logging.getLogger("steward.test").warning("with %s", BOT_TOKEN)
    finally:
        logs.REQUEST_ID.reset(token)

    line = capsys.readouterr().err.strip()
    assert line.endswith(f"steward.test [request_id=abc123]: with {REDACTED}")


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("LOG_FORMAT", "xml", "LOG_FORMAT must be json or text, not 'xml'"),
    ("LOG_LEVEL", "loud", "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not 'loud'"),
])
def test_a_bad_log_setting_is_one_line_of_error(cli_home, restore_logging, monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)

    result = CliRunner().invoke(main, ["scheduler"])

    assert result.exit_code != 0
    assert result.output.strip() == f"Error: {message}"


def test_a_bad_log_setting_is_refused_before_anything_is_configured(restore_logging):
    with pytest.raises(InvalidInput):
        configure_logging(Settings(_env_file=None, log_format="yaml"), policy=None, environ={})
    assert not logs.is_configured()
