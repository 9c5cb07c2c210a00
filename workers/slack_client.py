"""The one Slack Web API client every process uses, and what it does on each HTTP attempt.

`make_slack_client(settings)` builds it for the bot (listeners, and the per-request clients Bolt copies
from it, which share its retry handlers) and for the worker. Its retry handlers:

- count every attempt in SLACK_API_CALLS by method and status (`ok`, Slack's error name such as
  `channel_not_found`, the HTTP status such as `429` or `503`, or `connection_error`);
- retry connection errors and 5xx with exponential backoff and jitter;
- retry a 429 after its Retry-After, but only when that is at most `slack_retry_max_wait_seconds`: a
  longer wait surfaces as the 429 error, so the worker's outbox schedules the message at Retry-After
  (workers/delivery.py) instead of holding a worker thread for a minute.

At most `slack_max_retries` retries per call, whatever the reasons. Sleeping goes through an injectable
`sleep`, so tests exercise the waits without waiting.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from http.client import RemoteDisconnected
from typing import Any
from urllib.error import URLError
from urllib.parse import urlsplit

from slack_sdk import WebClient
from slack_sdk.http_retry import RetryHandler
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from workers.metrics import SLACK_API_CALLS
from workflows.settings import Settings

BACKOFF_FACTOR_SECONDS = 0.5  # waits 0.5, 1, 2… seconds, each plus up to a second of jitter
SERVER_ERRORS = frozenset({500, 502, 503, 504})
# Errors where the request never reached Slack, or the connection broke: as slack_sdk's own handler.
CONNECTION_ERRORS = (URLError, ConnectionResetError, RemoteDisconnected)
CONNECTION_ERROR = "connection_error"

Sleep = Callable[[float], Any]


def make_slack_client(settings: Settings, *, max_retries: int | None = None, max_wait_seconds: float | None = None,
                      sleep: Sleep = time.sleep, timeout: float | None = None) -> WebClient:
    """The configured Web API client; retries, the Retry-After cap and the timeout default to the settings."""
    token = settings.slack_bot_token.get_secret_value() or None
    handlers = retry_handlers(
        max_retries=settings.slack_max_retries if max_retries is None else max_retries,
        max_wait_seconds=settings.slack_retry_max_wait_seconds if max_wait_seconds is None else max_wait_seconds,
        sleep=sleep)
    timeout = settings.slack_timeout_seconds if timeout is None else timeout
    return WebClient(token=token, base_url=settings.slack_api_url, timeout=timeout, retry_handlers=handlers)


def retry_handlers(*, max_retries: int, max_wait_seconds: float, sleep: Sleep = time.sleep) -> list[RetryHandler]:
    """The counting handler first (slack_sdk offers every attempt to the handlers in order), then the retries."""
    backoff = BackoffRetryIntervalCalculator(backoff_factor=BACKOFF_FACTOR_SECONDS)
    return [CountAttempts(),
            RetryConnectionErrors(max_retry_count=max_retries, interval_calculator=backoff, sleep=sleep),
            RetryRateLimited(max_retry_count=max_retries, max_wait_seconds=max_wait_seconds, sleep=sleep),
            RetryServerErrors(max_retry_count=max_retries, interval_calculator=backoff, sleep=sleep)]


def attempt_status(response: HttpResponse | None, error: Exception | None) -> str:
    """The SLACK_API_CALLS status of one attempt: ok, Slack's error name, the HTTP status, or connection_error."""
    if response is None:
        return CONNECTION_ERROR if error is not None else "unknown"
    if response.status_code != 200:
        return str(response.status_code)
    body = response.body or {}
    if body.get("ok"):
        return "ok"
    return str(body.get("error") or "invalid_response")


def api_method(url: str) -> str:
    """The Web API method an attempt called (`chat.postMessage`), from its URL."""
    return urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1] or "unknown"


class CountAttempts(RetryHandler):
    """Never retries: it only counts the attempt it is shown, which it is, first, for every attempt."""

    def __init__(self) -> None:
        super().__init__(max_retry_count=0)

    def can_retry(self, *, state: RetryState, request: HttpRequest, response: HttpResponse | None = None,
                  error: Exception | None = None) -> bool:
        """Count this attempt; never ask for a retry."""
        SLACK_API_CALLS.labels(method=api_method(request.url), status=attempt_status(response, error)).inc()
        return False


class _SleepingRetry(RetryHandler):
    """A retry handler that waits through `sleep` (slack_sdk's own call time.sleep directly)."""

    def __init__(self, *, max_retry_count: int, interval_calculator: BackoffRetryIntervalCalculator | None = None,
                 sleep: Sleep = time.sleep) -> None:
        super().__init__(max_retry_count=max_retry_count,
                         interval_calculator=interval_calculator or BackoffRetryIntervalCalculator())
        self._sleep = sleep

    def prepare_for_next_attempt(self, *, state: RetryState, request: HttpRequest,
                                 response: HttpResponse | None = None, error: Exception | None = None) -> None:
        """Wait, then let slack_sdk send the request again."""
        state.next_attempt_requested = True
        self._sleep(self.wait_seconds(state, response))
        state.increment_current_attempt()

    def wait_seconds(self, state: RetryState, response: HttpResponse | None) -> float:
        """How long to wait before the next attempt: exponential backoff with jitter."""
        return self.interval_calculator.calculate_sleep_duration(state.current_attempt)


class RetryConnectionErrors(_SleepingRetry):
    """Retries a request that failed to connect or lost its connection (never one Slack answered)."""

    def _can_retry(self, *, state: RetryState, request: HttpRequest, response: HttpResponse | None = None,
                   error: Exception | None = None) -> bool:
        # An HTTPError is a URLError too, but it carries Slack's answer: the other handlers judge that.
        return response is None and isinstance(error, CONNECTION_ERRORS)


class RetryServerErrors(_SleepingRetry):
    """Retries a 5xx that says Slack (or a proxy before it) is struggling, not that the request is wrong."""

    def _can_retry(self, *, state: RetryState, request: HttpRequest, response: HttpResponse | None = None,
                   error: Exception | None = None) -> bool:
        return response is not None and response.status_code in SERVER_ERRORS


class RetryRateLimited(_SleepingRetry):
    """Retries a 429 after its Retry-After, if that is no longer than `max_wait_seconds`."""

    def __init__(self, *, max_retry_count: int, max_wait_seconds: float, sleep: Sleep = time.sleep) -> None:
        super().__init__(max_retry_count=max_retry_count, sleep=sleep)
        self.max_wait_seconds = max_wait_seconds

    def _can_retry(self, *, state: RetryState, request: HttpRequest, response: HttpResponse | None = None,
                   error: Exception | None = None) -> bool:
        if response is None or response.status_code != 429:
            return False
        return retry_after(response) <= self.max_wait_seconds

    def wait_seconds(self, state: RetryState, response: HttpResponse | None) -> float:
        """Retry-After, plus up to half a second so clients told the same second do not return together."""
        return retry_after(response) + random.random() / 2


def retry_after(response: HttpResponse | None) -> float:
    """A 429's Retry-After in seconds (1 when missing or not a number of seconds, as Slack's SDKs assume)."""
    headers = response.headers if response is not None else {}
    for name, values in headers.items():
        if name.lower() == "retry-after":
            value = values[0] if isinstance(values, list) and values else values
            try:
                return max(float(value), 0.0)
            except (TypeError, ValueError):
                break
    return 1.0
