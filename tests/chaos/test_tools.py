"""The chaos run's instruments: the sandbox Slack's seeded faults and the TCP proxy that plays a database
outage. Both must do exactly what the run's figures claim, or the figures mean nothing."""

from __future__ import annotations

import socket
import threading
from collections import Counter

import pytest
import requests
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from steward.sandbox.slack_api import DEFAULT_TOKEN, FakeSlack
from tests.chaos.proxy import TcpProxy


@pytest.fixture
def fake():
    """A started sandbox Slack."""
    with FakeSlack() as slack:
        yield slack


def post(fake: FakeSlack, text: str) -> requests.Response:
    """One raw chat.postMessage (no client retries, a short timeout)."""
    return requests.post(f"{fake.url}chat.postMessage", data={"channel": "C1", "text": text},
                         headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"}, timeout=0.5)


def test_chaos_faults_a_seeded_share_of_calls_three_ways_and_carries_none_out(fake):
    fake.chaos(rate=0.3, seed=1, hold_seconds=0.6)
    answers = Counter()
    for n in range(90):
        try:
            response = post(fake, f"m{n}")
            answers[str(response.status_code)] += 1
            if response.status_code == 429:
                assert response.headers["Retry-After"] in ("1", "2")
        except requests.Timeout:
            answers["timeout"] += 1

    faults = fake.faults()
    assert Counter(c.fault for c in faults) == {k: answers[k] for k in ("429", "500", "timeout")}
    assert 15 <= len(faults) <= 40 and all(answers[k] >= 3 for k in ("429", "500", "timeout")), answers
    # A faulted call is recorded as failed and posts nothing: only the answered calls are in the channel.
    assert all(c.failed for c in faults)
    assert len(fake.messages("C1")) == answers["200"] == 90 - len(faults)


def test_the_same_seed_faults_the_same_calls(fake):
    def faulted(seed: int) -> list[str | None]:
        fake.reset()
        fake.chaos(rate=0.5, seed=seed, hold_seconds=0)
        client = WebClient(token=DEFAULT_TOKEN, base_url=fake.url, retry_handlers=[])
        for n in range(20):
            try:
                client.auth_test() if n % 5 == 0 else client.chat_postMessage(channel="C1", text=str(n))
            except SlackApiError:
                pass
        return [c.fault for c in fake.calls]

    assert faulted(7) == faulted(7) != faulted(8)
    # auth.test is spared by default (a bot checks its token once at start-up).
    assert all(c.fault is None for c in fake.calls if c.method == "auth.test")


def test_chaos_off_answers_every_call(fake):
    fake.chaos(rate=1.0, seed=0, hold_seconds=0)
    fake.chaos(rate=0)
    assert post(fake, "hi").json()["ok"] is True
    with pytest.raises(ValueError):
        fake.chaos(rate=1.5)


@pytest.fixture
def echo_server():
    """A loopback server that echoes what it is sent, one connection at a time."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(1024):
                    conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def test_the_proxy_forwards_refuses_then_accepts_again_on_the_same_port(echo_server):
    proxy = TcpProxy(echo_server).start()
    try:
        kept = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        kept.sendall(b"ping")
        assert kept.recv(4) == b"ping"

        proxy.refuse()
        # The open connection is cut, and a new one is refused, as by a database that went away.
        assert kept.recv(4) == b""
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=2)

        proxy.accept()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as again:
            again.sendall(b"pong")
            assert again.recv(4) == b"pong"
    finally:
        proxy.stop()
