"""Socket Mode for the sandbox Slack: a local WebSocket server that delivers envelopes as Slack does.

`FakeSlack` serves it. Socket Mode is always enabled in the sandbox app (as `socket_mode_enabled` is in
slack-manifest.yml): `apps.connections.open`, called with an app-level token (`DEFAULT_APP_TOKEN`,
"xapp-..."), starts this server on first use and answers with a one-time `ws://127.0.0.1:<port>/link/?ticket=`
URL; a bot token gets `not_allowed_token_type`, as from Slack. `fake.start_socket_mode()` starts it (or
returns the running one) so a test can drive it:

    with FakeSlack() as fake:
        socket = fake.start_socket_mode()
        # ... a client (Bolt's SocketModeHandler, base_url=fake.url) connects with "xapp-test" ...
        socket.wait_for_connection()
        socket.slash_command("help", user_id="U1", response_url=fake.response_url("cmd"))
        ack = socket.interactive(view_submission_payload)   # e.g. {"response_action": "errors", ...}
        socket.event({"type": "app_home_opened", "user": "U1", "tab": "home"})
        before = len(socket.connections)
        socket.request_reconnect()                          # {"type": "disconnect", "reason": "refresh_requested"}
        socket.wait_for_connection(after=before)            # the client came back on a fresh URL

Each connection is greeted with Slack's `hello`. Each envelope carries a fresh `envelope_id` and
`accepts_response_payload`, and the sender waits (`ack_timeout`, default 10s; Slack's is 3s) for the
client's ack `{"envelope_id": ..., "payload": ...}`, returning its payload (None when the ack has none).
Envelopes go to the newest open connection that has not been asked to reconnect, as Slack stops
using a connection once it has asked the client to refresh it. Payloads come from the builders of
`steward.sandbox.signing`, so HTTP and Socket Mode requests have the same shape.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from steward.sandbox import signing

LINK_PATH = "/link/"
DEFAULT_ACK_TIMEOUT = 10.0
# Interactions whose ack may carry a response (errors, an updated view, options); Slack marks the rest false.
_RESPONDING_INTERACTIONS = frozenset({"view_submission", "block_suggestion"})


@dataclass
class SocketConnection:
    """One WebSocket connection a client opened, as a test should see it."""

    number: int  # 1 for the first connection, 2 for the next...
    ticket: str
    open: bool = True
    refresh_requested: bool = False  # sent a `disconnect`, so no new envelopes go to it


@dataclass
class _Pending:
    """An envelope waiting for its ack."""

    acked: threading.Event = field(default_factory=threading.Event)
    ack: dict[str, Any] = field(default_factory=dict)


class SocketModeServer:
    """Slack's Socket Mode endpoint on 127.0.0.1 (ephemeral port), served by `websockets` in a thread."""

    def __init__(self, *, app_id: str = "A0001", ack_timeout: float = DEFAULT_ACK_TIMEOUT,
                 response_url: Callable[[str], str] | None = None) -> None:
        """Set up the server; `start()` serves.

        A command sent without a response_url gets `response_url("cmd-<first word>")` (FakeSlack passes
        its own `response_url`, so replies are recorded under that name).
        """
        self.app_id = app_id
        self.ack_timeout = ack_timeout
        self._response_url = response_url
        self._changed = threading.Condition()  # guards everything below; notified on (dis)connects and acks
        self._tickets: set[str] = set()
        self._connections: list[tuple[SocketConnection, ServerConnection]] = []
        self._pending: dict[str, _Pending] = {}
        self._event_ids = itertools.count(1)
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> SocketModeServer:
        """Start serving in a daemon thread; returns self."""
        if self._server is None:
            # slack_sdk's clients ping the server themselves; a short close_timeout keeps stop() quick.
            self._server = serve(self._serve_connection, "127.0.0.1", 0, process_request=self._check_ticket,
                                 ping_interval=None, close_timeout=2)
            self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="socket-mode")
            self._thread.start()
        return self

    def stop(self) -> None:
        """Close every connection and release the port."""
        if self._server is None:
            return
        self._server.shutdown()
        assert self._thread is not None
        self._thread.join()
        self._server = self._thread = None

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        if self._server is None:
            raise RuntimeError("the Socket Mode server is not started")
        return self._server.socket.getsockname()[1]

    def issue_url(self) -> str:
        """A new one-time WebSocket URL, as `apps.connections.open` hands out."""
        ticket = uuid.uuid4().hex
        with self._changed:
            self._tickets.add(ticket)
        return f"ws://127.0.0.1:{self.port}{LINK_PATH}?ticket={ticket}&app_id={self.app_id}"

    # -- inspection --------------------------------------------------------------------------------

    @property
    def connections(self) -> list[SocketConnection]:
        """Every connection opened so far, oldest first (copies)."""
        with self._changed:
            return [copy.copy(record) for record, _ in self._connections]

    def wait_for_connection(self, *, after: int = 0, timeout: float | None = None) -> SocketConnection:
        """Wait for an open connection numbered above `after` that envelopes may use; returns it."""
        record, _ = self._wait_usable(after, self.ack_timeout if timeout is None else timeout)
        return copy.copy(record)

    # -- what Slack sends ----------------------------------------------------------------------------

    def slash_command(self, text: str = "", *, command: str = "/steward", timeout: float | None = None,
                      **fields: str) -> dict[str, Any] | None:
        """Send a slash command (`fields` as for `signing.command_payload`); returns the ack's payload."""
        if "response_url" not in fields and self._response_url is not None:
            fields["response_url"] = self._response_url(f"cmd-{(text.split() or [command.lstrip('/')])[0]}")
        payload = signing.command_payload(command, text, **fields)
        return self.send_envelope("slash_commands", payload, accepts_response_payload=True, timeout=timeout)

    def interactive(self, payload: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any] | None:
        """Send an interaction (block_actions, view_submission, block_suggestion...); returns the ack's payload."""
        accepts = payload.get("type") in _RESPONDING_INTERACTIONS
        return self.send_envelope("interactive", payload, accepts_response_payload=accepts, timeout=timeout)

    def event(self, inner_event: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any] | None:
        """Send an event (e.g. {"type": "app_home_opened", ...}) in its event_callback; returns the ack's payload."""
        payload = signing.event_callback(inner_event, api_app_id=self.app_id, event_id=f"Ev{next(self._event_ids):08d}")
        return self.send_envelope("events_api", payload, accepts_response_payload=False, timeout=timeout,
                                  retry_attempt=0, retry_reason="")

    def send_envelope(self, kind: str, payload: dict[str, Any], *, accepts_response_payload: bool,
                      timeout: float | None = None, **extra: Any) -> dict[str, Any] | None:
        """Send one envelope of type `kind` and wait for its ack; returns the ack's payload (None if it has none).

        Raises TimeoutError when no client is connected, or none acks, within `timeout` (`ack_timeout`).
        """
        timeout = self.ack_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        envelope_id = str(uuid.uuid4())
        envelope = {"envelope_id": envelope_id, "payload": payload, "type": kind,
                    "accepts_response_payload": accepts_response_payload, **extra}
        pending = _Pending()
        with self._changed:
            self._pending[envelope_id] = pending
        try:
            _, ws = self._wait_usable(0, timeout)
            ws.send(json.dumps(envelope))
            if not pending.acked.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"no ack for {kind} envelope {envelope_id} within {timeout}s")
            return pending.ack.get("payload")
        finally:
            with self._changed:
                self._pending.pop(envelope_id, None)

    def request_reconnect(self, reason: str = "refresh_requested") -> int:
        """Ask every open connection to reconnect (`{"type": "disconnect", "reason": ...}`); returns how many."""
        message = json.dumps({"type": "disconnect", "reason": reason, "debug_info": {"host": "sandbox-applink"}})
        with self._changed:
            targets = [(record, ws) for record, ws in self._connections if record.open]
            for record, _ in targets:
                record.refresh_requested = True
        for _, ws in targets:
            try:
                ws.send(message)
            except ConnectionClosed:
                pass  # it left on its own: nothing to ask
        return len(targets)

    # -- serving (server threads) --------------------------------------------------------------------

    def _wait_usable(self, after: int, timeout: float) -> tuple[SocketConnection, ServerConnection]:
        # The newest usable connection wins: after a refresh that is the one the client just opened.
        def usable() -> tuple[SocketConnection, ServerConnection] | None:
            for record, ws in reversed(self._connections):
                if record.number > after and record.open and not record.refresh_requested:
                    return record, ws
            return None

        with self._changed:
            found = self._changed.wait_for(usable, timeout)
            if found is None:
                raise TimeoutError(f"no Socket Mode client connected within {timeout}s "
                                   f"(connections so far: {len(self._connections)})")
            return found

    def _check_ticket(self, connection: ServerConnection, request: Request) -> Response | None:
        # Each ticket opens one connection: a reconnecting client must call apps.connections.open again.
        path, ticket = _link(request.path)
        with self._changed:
            valid = path == LINK_PATH and ticket in self._tickets
            self._tickets.discard(ticket)
        return None if valid else connection.respond(HTTPStatus.UNAUTHORIZED, "invalid or used ticket\n")

    def _serve_connection(self, ws: ServerConnection) -> None:
        with self._changed:
            record = SocketConnection(number=len(self._connections) + 1, ticket=_link(ws.request.path)[1])
            active = sum(1 for r, _ in self._connections if r.open) + 1
            # Greeted and registered under one lock: no envelope can overtake the hello, and a client
            # that has read the hello is already registered (a reconnect request right after reaches it).
            ws.send(json.dumps({"type": "hello", "num_connections": active,
                                "debug_info": {"host": "sandbox-applink", "approximate_connection_time": 18060},
                                "connection_info": {"app_id": self.app_id}}))
            self._connections.append((record, ws))
            self._changed.notify_all()
        try:
            for raw in ws:
                self._on_message(raw)
        except ConnectionClosed:
            pass
        finally:
            with self._changed:
                record.open = False
                self._changed.notify_all()

    def _on_message(self, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            return  # Slack ignores what it cannot read
        if not isinstance(message, dict):
            return
        with self._changed:
            pending = self._pending.get(str(message.get("envelope_id")))
        if pending is not None:
            pending.ack = message
            pending.acked.set()


def _link(request_path: str) -> tuple[str, str]:
    """The path and the ticket of a connection request."""
    target = urlsplit(request_path)
    return target.path, (parse_qs(target.query).get("ticket") or [""])[0]
