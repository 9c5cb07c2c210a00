"""Tests of the sandbox Slack's Socket Mode: apps.connections.open, hello, envelopes and acks, reconnection."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from steward.sandbox.slack_api import DEFAULT_APP_TOKEN, DEFAULT_TOKEN, FakeSlack
from steward.sandbox.socket_mode import SocketModeServer


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def web(fake) -> WebClient:
    # No retry handlers, so errors surface to the test.
    return WebClient(base_url=fake.url, retry_handlers=[])


class Recorder:
    """A Socket Mode request listener that remembers each request and acks it with a chosen payload."""

    def __init__(self) -> None:
        self.requests: list[SocketModeRequest] = []
        self.reply: dict | None = None  # the ack's payload; None acks without one
        self.silent = False  # True: never ack

    def __call__(self, client: SocketModeClient, request: SocketModeRequest) -> None:
        self.requests.append(request)
        if not self.silent:
            client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id, payload=self.reply))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def client(fake, recorder) -> Iterator[SocketModeClient]:
    """slack_sdk's own Socket Mode client, connected to the sandbox with the app-level token."""
    client = SocketModeClient(app_token=DEFAULT_APP_TOKEN, web_client=WebClient(base_url=fake.url))
    client.socket_mode_request_listeners.append(recorder)
    client.connect()
    yield client
    # Closing the server side first spares close() the client's 3-second receive timeout.
    client.auto_reconnect_enabled = False
    fake.start_socket_mode().stop()
    client.close()


def api_error(call) -> SlackApiError:
    with pytest.raises(SlackApiError) as excinfo:
        call()
    return excinfo.value


# -- apps.connections.open ---------------------------------------------------------------------------


def test_an_app_token_gets_a_one_time_websocket_url(fake, web):
    first = web.apps_connections_open(app_token=DEFAULT_APP_TOKEN)
    second = web.apps_connections_open(app_token=DEFAULT_APP_TOKEN)

    port = fake.start_socket_mode().port
    assert first["url"].startswith(f"ws://127.0.0.1:{port}/link/?ticket=")
    assert first["url"] != second["url"]
    assert first.headers["X-OAuth-Scopes"] == "connections:write"
    assert fake.last("apps.connections.open").token == DEFAULT_APP_TOKEN


@pytest.mark.parametrize(("token", "error"), [(DEFAULT_TOKEN, "not_allowed_token_type"),
                                               ("xapp-1-A0001-unknown", "invalid_auth")])
def test_apps_connections_open_refuses_other_tokens(web, token, error):
    assert api_error(lambda: web.apps_connections_open(app_token=token)).response["error"] == error


def test_an_app_token_cannot_call_bot_methods(fake):
    as_app = WebClient(token=DEFAULT_APP_TOKEN, base_url=fake.url, retry_handlers=[])

    assert api_error(lambda: as_app.chat_postMessage(channel="C1", text="hi")).response["error"] == (
        "not_allowed_token_type")
    assert fake.messages() == []


# -- connecting ------------------------------------------------------------------------------------------


def test_a_connection_is_greeted_with_hello(fake, web):
    url = web.apps_connections_open(app_token=DEFAULT_APP_TOKEN)["url"]

    with connect(url) as ws:
        hello = json.loads(ws.recv(timeout=5))
        [record] = fake.start_socket_mode().connections

    assert hello["type"] == "hello"
    assert hello["num_connections"] == 1
    assert hello["connection_info"] == {"app_id": "A0001"}
    assert (record.number, record.open, record.refresh_requested) == (1, True, False)
    assert url.endswith(f"ticket={record.ticket}&app_id=A0001")


def test_a_ticket_opens_one_connection_only(fake, web):
    url = web.apps_connections_open(app_token=DEFAULT_APP_TOKEN)["url"]
    with connect(url) as ws:
        ws.recv(timeout=5)
        with pytest.raises(InvalidStatus) as reused:
            connect(url)
    with pytest.raises(InvalidStatus) as forged:
        connect(url.split("?")[0] + "?ticket=forged")

    assert reused.value.response.status_code == 401
    assert forged.value.response.status_code == 401
    assert len(fake.start_socket_mode().connections) == 1


# -- envelopes and acks ------------------------------------------------------------------------------------


def test_a_slash_command_travels_in_an_envelope_and_its_ack_comes_back(fake, client, recorder):
    socket = fake.start_socket_mode()
    recorder.reply = {"text": "got it"}

    ack = socket.slash_command("help me", user_id="U9", channel_id="C9")

    assert ack == {"text": "got it"}
    [request] = recorder.requests
    assert request.type == "slash_commands" and request.accepts_response_payload is True
    assert request.envelope_id
    payload = request.payload
    assert (payload["command"], payload["text"], payload["user_id"], payload["channel_id"]) == (
        "/steward", "help me", "U9", "C9")
    assert payload["trigger_id"] and payload["team_id"] == "T0001"
    # Replies to its response_url are recorded by the fake, named after the command's first word.
    assert payload["response_url"] == fake.response_url("cmd-help")


def test_each_envelope_has_a_fresh_id_and_an_ack_without_payload_returns_none(fake, client, recorder):
    socket = fake.start_socket_mode()

    acks = [socket.slash_command("help") for _ in range(3)]

    assert acks == [None, None, None]
    assert len({r.envelope_id for r in recorder.requests}) == 3


@pytest.mark.parametrize(("kind", "accepts"), [("view_submission", True), ("block_suggestion", True),
                                               ("block_actions", False)])
def test_interactions_say_whether_the_ack_may_answer(fake, client, recorder, kind, accepts):
    recorder.reply = {"response_action": "errors", "errors": {"name": "Say a name."}}

    ack = fake.start_socket_mode().interactive({"type": kind, "user": {"id": "U1"}})

    assert ack == {"response_action": "errors", "errors": {"name": "Say a name."}}
    [request] = recorder.requests
    assert (request.type, request.accepts_response_payload) == ("interactive", accepts)
    assert request.payload == {"type": kind, "user": {"id": "U1"}}


def test_an_event_arrives_in_its_event_callback(fake, client, recorder):
    socket = fake.start_socket_mode()

    socket.event({"type": "app_home_opened", "user": "U1", "tab": "home"})
    socket.event({"type": "app_home_opened", "user": "U2", "tab": "home"})

    first, second = recorder.requests
    assert (first.type, first.accepts_response_payload, first.retry_attempt) == ("events_api", False, 0)
    assert first.payload["type"] == "event_callback"
    assert first.payload["event"] == {"type": "app_home_opened", "user": "U1", "tab": "home"}
    assert first.payload["api_app_id"] == "A0001"
    assert first.payload["event_id"] != second.payload["event_id"]


def test_no_ack_times_out(fake, client, recorder):
    recorder.silent = True

    with pytest.raises(TimeoutError, match="no ack for slash_commands envelope"):
        fake.start_socket_mode().slash_command("help", timeout=0.3)


def test_sending_without_a_client_times_out():
    server = SocketModeServer(ack_timeout=0.2).start()
    try:
        with pytest.raises(TimeoutError, match="no Socket Mode client connected"):
            server.slash_command("help")
    finally:
        server.stop()


# -- reconnection ----------------------------------------------------------------------------------------


def test_refresh_requested_makes_the_client_reconnect_on_a_fresh_url(fake, client, recorder):
    socket = fake.start_socket_mode()
    socket.wait_for_connection()

    assert socket.request_reconnect() == 1
    fresh = socket.wait_for_connection(after=1)
    socket.slash_command("help")

    assert fresh.number == 2
    first = socket.connections[0]
    assert first.refresh_requested is True
    # The client asked for a second URL (a ticket opens one connection) and the envelope reached it.
    assert len(fake.calls_to("apps.connections.open")) == 2
    assert fresh.ticket != first.ticket
    assert [r.payload["text"] for r in recorder.requests] == ["help"]


def test_envelopes_never_go_to_a_connection_asked_to_refresh(fake, web):
    socket = fake.start_socket_mode()
    url = web.apps_connections_open(app_token=DEFAULT_APP_TOKEN)["url"]
    with connect(url) as ws:
        ws.recv(timeout=5)  # hello
        socket.request_reconnect()
        assert json.loads(ws.recv(timeout=5))["reason"] == "refresh_requested"

        # A client that ignores the request gets nothing more on that connection.
        with pytest.raises(TimeoutError, match="no Socket Mode client connected"):
            socket.slash_command("help", timeout=0.3)


# -- Bolt over Socket Mode -----------------------------------------------------------------------------------


def test_bolt_acks_a_view_submission_with_errors_and_answers_a_command(fake):
    # process_before_response: the command's respond() has happened by the time its ack arrives.
    app = App(client=WebClient(token=DEFAULT_TOKEN, base_url=fake.url), signing_secret="unused",
              token_verification_enabled=False, process_before_response=True)

    @app.view("register")
    def refuse(ack):
        ack(response_action="errors", errors={"name": "Say a name."})

    @app.command("/steward")
    def answer(ack, respond, command):
        ack()
        respond(f"you said {command['text']}")

    handler = SocketModeHandler(app, DEFAULT_APP_TOKEN)
    handler.connect()
    try:
        socket = fake.start_socket_mode()
        ack = socket.interactive({"type": "view_submission", "user": {"id": "U1"}, "team": {"id": "T0001"},
                                  "view": {"id": "V1", "type": "modal", "callback_id": "register",
                                           "state": {"values": {}}}})
        socket.slash_command("hello")
    finally:
        handler.client.auto_reconnect_enabled = False
        fake.start_socket_mode().stop()
        handler.close()

    assert ack == {"response_action": "errors", "errors": {"name": "Say a name."}}
    reply = fake.last("response_url")
    assert (reply.name, reply.args["text"]) == ("cmd-hello", "you said hello")
