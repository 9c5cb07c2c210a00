"""The one configured Slack client against the sandbox Slack API: what it retries, how long it waits (through
an injected sleep, so nothing waits for real), when it gives up, and every attempt counted by method and status."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from urllib.error import URLError

import pytest
from prometheus_client import REGISTRY
from slack_sdk.errors import SlackApiError

from steward.sandbox.slack_api import DEFAULT_TOKEN, FakeSlack
from workers.slack_client import BACKOFF_FACTOR_SECONDS, make_slack_client
from workflows.settings import Settings

POST = "chat.postMessage"


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    """The sandbox Slack Web API."""
    with FakeSlack() as server:
        yield server


def settings_for(url: str, **overrides) -> Settings:
    """Settings pointing the client at `url`, with the bot token the sandbox accepts."""
    return Settings(_env_file=None, slack_bot_token=DEFAULT_TOKEN, slack_api_url=url, **overrides)


class Attempts:
    """Reads SLACK_API_CALLS by method and status, relative to when it was made (the counter is process-wide)."""

    def __init__(self) -> None:
        self._before: dict[tuple[str, str], float] = {}

    @staticmethod
    def _read(method: str, status: str) -> float:
        return REGISTRY.get_sample_value("steward_slack_api_calls_total", {"method": method, "status": status}) or 0.0

    def start(self, *keys: tuple[str, str]) -> Attempts:
        """Remember the current counts of these (method, status) pairs."""
        self._before = {key: self._read(*key) for key in keys}
        return self

    def since(self, method: str, status: str) -> float:
        """How many attempts with this method and status were counted since `start`."""
        return self._read(method, status) - self._before.get((method, status), 0.0)


@pytest.fixture
def attempts() -> Attempts:
    """A reader of SLACK_API_CALLS for the test."""
    return Attempts()


def test_a_429_is_retried_after_its_retry_after(fake, attempts):
    slept: list[float] = []
    client = make_slack_client(settings_for(fake.url), sleep=slept.append)
    fake.fail_next(POST, retry_after=1)
    attempts.start((POST, "429"), (POST, "ok"))

    response = client.chat_postMessage(channel="C1", text="hello")

    assert response["ok"] and fake.last(POST).args["text"] == "hello"
    assert [call.failed for call in fake.calls_to(POST)] == [True, False]
    assert len(slept) == 1 and 1.0 <= slept[0] <= 1.5, "waits Retry-After, plus at most half a second of jitter"
    assert attempts.since(POST, "429") == 1 and attempts.since(POST, "ok") == 1


def test_a_retry_after_beyond_the_cap_surfaces_for_the_outbox_to_schedule(fake, attempts):
    slept: list[float] = []
    client = make_slack_client(settings_for(fake.url, slack_retry_max_wait_seconds=5), sleep=slept.append)
    fake.fail_next(POST, retry_after=30)
    attempts.start((POST, "429"))

    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="C1", text="hello")

    assert raised.value.response.status_code == 429
    assert raised.value.response.headers["Retry-After"] == "30", "delivery reads it to schedule the retry"
    assert slept == [] and len(fake.calls_to(POST)) == 1
    assert attempts.since(POST, "429") == 1


def test_a_server_error_is_retried_with_exponential_backoff(fake, attempts):
    slept: list[float] = []
    client = make_slack_client(settings_for(fake.url), max_retries=3, sleep=slept.append)
    fake.fail_next(POST, status=503, times=2)
    attempts.start((POST, "503"), (POST, "ok"))

    assert client.chat_postMessage(channel="C1", text="hello")["ok"]

    assert len(fake.calls_to(POST)) == 3
    # Backoff factor × 2^attempt, plus up to a second of jitter.
    assert BACKOFF_FACTOR_SECONDS <= slept[0] <= BACKOFF_FACTOR_SECONDS + 1
    assert 2 * BACKOFF_FACTOR_SECONDS <= slept[1] <= 2 * BACKOFF_FACTOR_SECONDS + 1
    assert attempts.since(POST, "503") == 2 and attempts.since(POST, "ok") == 1


def test_retries_stop_after_the_configured_count(fake, attempts):
    slept: list[float] = []
    client = make_slack_client(settings_for(fake.url, slack_max_retries=2), sleep=slept.append)
    fake.fail_next(POST, status=500, times=10)
    attempts.start((POST, "500"))

    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="C1", text="hello")

    assert raised.value.response.status_code == 500
    assert len(fake.calls_to(POST)) == 3 and len(slept) == 2, "one attempt and two retries"
    assert attempts.since(POST, "500") == 3


def test_a_refused_connection_is_retried_then_raised(attempts):
    with socket.socket() as sock:  # a port nothing listens on once this socket closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    slept: list[float] = []
    client = make_slack_client(settings_for(f"http://127.0.0.1:{port}/api/"), max_retries=2, sleep=slept.append)
    attempts.start(("auth.test", "connection_error"))

    with pytest.raises(URLError):
        client.auth_test()

    assert len(slept) == 2
    assert attempts.since("auth.test", "connection_error") == 3


def test_a_slack_error_is_counted_by_name_and_not_retried(fake, attempts):
    slept: list[float] = []
    client = make_slack_client(settings_for(fake.url), sleep=slept.append)
    fake.fail_next(POST, error="channel_not_found")
    attempts.start((POST, "channel_not_found"))

    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="C1", text="hello")

    assert slept == [] and len(fake.calls_to(POST)) == 1
    assert attempts.since(POST, "channel_not_found") == 1


def test_the_client_comes_from_the_settings(fake):
    client = make_slack_client(settings_for(fake.url))

    assert client.token == DEFAULT_TOKEN and client.base_url == fake.url
    assert client.auth_test()["ok"]
