"""Steward's logs: one JSON object a line (or text for humans), tagged with the request or task id, and
never carrying a secret.

`configure_logging(settings)` runs once at the start of every process (serve, worker, scheduler and the
one-shot commands). It puts one handler on the root logger, writing to stderr in LOG_FORMAT (`json`,
the default, or `text`) at LOG_LEVEL, and a `Redactor` on every root handler. Libraries log through
the root: Celery is told to keep its hands off (workers/celery_app.py), and gunicorn's loggers are
handed to it (steward/server.py).

The ids come from context variables: the bot sets REQUEST_ID for each Slack request (bot/telemetry.py),
the worker's task signals set TASK_ID for each task (workers/celery_app.py).

The Redactor replaces, in the message, its arguments, the traceback and stack, every configured secret
(the Slack tokens and signing secret, database and broker passwords, the policy's webhook secrets) and
anything shaped like a Slack token or like credentials in a URL, before any formatter sees the record.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from workflows.errors import InvalidInput
from workflows.policy import Policy, load_policy
from workflows.settings import Settings

REQUEST_ID: ContextVar[str | None] = ContextVar("steward_request_id", default=None)
TASK_ID: ContextVar[str | None] = ContextVar("steward_task_id", default=None)

FORMATS = ("json", "text")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
REDACTED = "[redacted]"
# Shorter configured values are not redacted: they cannot be told from ordinary text, and replacing
# them would garble every line (a real token, secret or password is far longer).
MIN_SECRET_LENGTH = 6
# Bot, user, app-level, refresh and configuration tokens, whatever their origin.
SLACK_TOKEN = re.compile(r"\b(?:xox[abeoprs]|xapp)-[A-Za-z0-9-]+")
# scheme://user:password@ : the password goes, the rest stays for whoever debugs the connection.
URL_CREDENTIALS = re.compile(r"(?P<prefix>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@/\s]+@")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s%(steward_ids)s: %(message)s"

logger = logging.getLogger(__name__)


def configure_logging(settings: Settings, *, policy: Policy | None = None,
                      environ: Mapping[str, str] | None = None) -> logging.Handler:
    """Send every log record to stderr as JSON lines (or text), secrets redacted; returns the handler.

    The webhook secrets redacted are those of `policy` (default: the settings' policy) read from `environ`."""
    level, log_format = settings.log_level.upper(), settings.log_format.lower()
    if level not in LEVELS:
        raise InvalidInput(f"LOG_LEVEL must be one of {', '.join(LEVELS)}, not {settings.log_level!r}")
    if log_format not in FORMATS:
        raise InvalidInput(f"LOG_FORMAT must be json or text, not {settings.log_format!r}")
    redactor = Redactor(secret_values(settings, policy=policy if policy is not None else _policy_or_none(settings),
                                      environ=os.environ if environ is None else environ))
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter(TEXT_FORMAT))
    handler._steward = True  # type: ignore[attr-defined] - marks our handler, replaced when reconfigured
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_steward", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    for each in root.handlers:  # handlers others installed (a test's capture) must not leak secrets either
        for old_filter in [f for f in each.filters if isinstance(f, Redactor)]:
            each.removeFilter(old_filter)
        each.addFilter(redactor)
    root.setLevel(level)
    # Warnings and uncaught exceptions would otherwise reach stderr as bare, unredacted text.
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
    return handler


def is_configured() -> bool:
    """Whether `configure_logging` has installed its handler in this process."""
    return any(getattr(h, "_steward", False) for h in logging.getLogger().handlers)


def secret_values(settings: Settings, *, policy: Policy | None, environ: Mapping[str, str]) -> list[str]:
    """Every configured secret value: Slack tokens and signing secret, URL passwords, webhook secrets."""
    values = [settings.slack_bot_token.get_secret_value(), settings.slack_signing_secret.get_secret_value(),
              settings.slack_app_token.get_secret_value()]
    for url in (settings.database_url, settings.broker_url):
        password = _url_password(url)
        if password:
            # As configured (percent-encoded in the URL) and as a driver may print it (decoded).
            values += [password, unquote(password), quote(unquote(password), safe="")]
    if policy is not None:
        values += [environ.get(c.secret_env, "") for c in policy.connectors.values() if c.secret_env]
    return [v for v in dict.fromkeys(values) if len(v) >= MIN_SECRET_LENGTH]


class Redactor(logging.Filter):
    """Replaces secrets in a record's message, arguments, traceback and stack before it is formatted."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted(set(secrets), key=len, reverse=True)

    def redact(self, text: str) -> str:
        """`text` with every secret, Slack token and URL password replaced by [redacted]."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        text = SLACK_TOKEN.sub(REDACTED, text)
        return URL_CREDENTIALS.sub(rf"\g<prefix>{REDACTED}@", text)

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place (once formatted, its arguments are gone); always lets it through."""
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not lose the line, nor leak its args
            message = f"{record.msg} (unformattable arguments)"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: timestamp, level, logger, message, request_id/task_id, exception, stack."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a single line of JSON."""
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **current_ids(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """Timestamped text for a terminal, with the request or task id in brackets when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as text, ids after the logger's name."""
        ids = current_ids()
        record.steward_ids = f" [{' '.join(f'{k}={v}' for k, v in ids.items())}]" if ids else ""
        return super().format(record)


def current_ids() -> dict[str, str]:
    """The request and task ids of the code that is logging, those that are set."""
    ids = {"request_id": REQUEST_ID.get(), "task_id": TASK_ID.get()}
    return {key: value for key, value in ids.items() if value}


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record comes, not when the handler was made (as
    logging's last-resort handler does), so a replaced stderr (a test's capture) never goes stale."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _url_password(url: str) -> str:
    if not url:
        return ""
    try:
        return urlsplit(url).password or ""
    except ValueError:  # a malformed URL is reported where it is used; here it simply has no password
        return ""


def _policy_or_none(settings: Settings) -> Policy | None:
    # Logging comes up before the command checks the policy; a bad one is reported by the command itself.
    try:
        return load_policy(settings.steward_policy)
    except Exception:  # noqa: BLE001
        return None


def _log_uncaught(kind: type[BaseException], error: BaseException, trace: Any) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, trace)
        return
    logger.critical("Uncaught exception", exc_info=(kind, error, trace))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    thread = args.thread.name if args.thread else "unknown"
    logger.critical("Uncaught exception in thread %s", thread,
                    exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
