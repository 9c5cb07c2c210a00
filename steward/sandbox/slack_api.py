"""A sandbox Slack Web API on loopback, for the demo and the tests.

`FakeSlack` serves the Web API methods Steward uses on 127.0.0.1, so a real
`slack_sdk.WebClient(base_url=fake.url)` (and Bolt's `respond()`, through
`fake.response_url(name)`) can be exercised end to end without the network.
It records every call, answers with Slack's response shapes and error names,
enforces the Block Kit limits Slack enforces, and can fail on demand
(rate limits, server errors, auth errors). `enforce_rate_limits()` (off by
default) rate-limits chat.postMessage per channel and per workspace as Slack
does, on a clock the test can pass in (`FakeSlack(clock=...)`) and advance.
`chaos(rate=..., seed=...)` (off by default) plays an unreliable Slack: a seeded fraction of Web API
calls is answered 429 with Retry-After, 500, or not at all within the client's timeout. A faulted
call is never carried out (nothing is posted), and is recorded as failed with its `fault`.
Every answer to a known token carries Slack's `X-OAuth-Scopes` header: by default the bot scopes
Steward needs (`bot.scopes.BOT_SCOPES`), changed with `grant_scopes([...])`.
Socket Mode (`apps.connections.open` with the app-level token `DEFAULT_APP_TOKEN`, then a local
WebSocket server) is in `steward.sandbox.socket_mode`; `fake.start_socket_mode()` returns its server.

    with FakeSlack() as fake:
        client = WebClient(token="xoxb-test", base_url=fake.url)
        client.chat_postMessage(channel="C1", text="hi")
        assert fake.last("chat.postMessage").args["text"] == "hi"
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from bot.scopes import BOT_SCOPES
from steward.sandbox.socket_mode import SocketModeServer

TEAM_ID = "T0001"
TEAM_NAME = "Steward Test"
TEAM_URL = "https://steward-test.slack.com/"
APP_ID = "A0001"
BOT_ID = "B0001"
BOT_USER_ID = "UBOT"
BOT_USER_NAME = "steward"
DEFAULT_TOKEN = "xoxb-test"
DEFAULT_APP_TOKEN = "xapp-1-A0001-test"
# The bot token's scopes: the `oauth_config.scopes.bot` of slack-manifest.yml (a test keeps them equal).
APP_TOKEN_SCOPES = ("connections:write",)
# The only methods an app-level token may call (and a bot token may not).
APP_TOKEN_METHODS = frozenset({"apps.connections.open"})

MESSAGE_METHODS = frozenset({"chat.postMessage", "chat.postEphemeral", "chat.update"})
VIEW_METHODS = frozenset({"views.open", "views.update", "views.push", "views.publish"})
MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_TEXT_CHARS = 3000
MAX_MODAL_TITLE_CHARS = 24

# Slack's timestamps are "seconds.microseconds"; a fixed epoch keeps them
# deterministic across runs while still sorting like real ones.
_TS_EPOCH_SECONDS = 1_700_000_000
_TS_STEP_MICROS = 100

Args = dict[str, Any]
Responder = Callable[[Args], dict]


@dataclass
class Call:
    """One request the fake received, as the test should see it."""

    method: str
    args: Args
    headers: dict[str, str]
    token: str | None
    failed: bool = False
    name: str | None = None  # the <name> of /response/<name>, for method "response_url"
    at: float | None = None  # the fake's clock reading when the call arrived
    retry_after: int | None = None  # the Retry-After of a 429 answer, in seconds
    fault: str | None = None  # the chaos fault this call was answered with ("429", "500", "timeout")


@dataclass
class _Reply:
    """An HTTP answer: a JSON object, or plain text for simulated outages."""

    status: int
    body: dict | str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the caller would see this as a successful call."""
        if self.status != HTTPStatus.OK:
            return False
        return not isinstance(self.body, dict) or bool(self.body.get("ok"))


@dataclass
class _Failure:
    """A failure queued by `fail_next`, with how many more calls it hits."""

    status: int
    retry_after: int
    error: str | None
    remaining: int

    def reply(self) -> _Reply:
        """The answer Slack gives for this kind of failure."""
        if self.status == HTTPStatus.TOO_MANY_REQUESTS:
            body = {"ok": False, "error": self.error or "ratelimited"}
            return _Reply(self.status, body, {"Retry-After": str(self.retry_after)})
        if self.status >= 500:
            return _Reply(self.status, HTTPStatus(self.status).phrase)
        return _Reply(self.status, {"ok": False, "error": self.error or "fatal_error"})


@dataclass
class _RateLimits:
    """Slack's chat.postMessage limits, as `enforce_rate_limits` set them, and the posts they count."""

    per_channel_per_second: int | None
    workspace_per_minute: int | None
    by_channel: dict[str, deque[float]] = field(default_factory=dict)
    workspace: deque[float] = field(default_factory=deque)

    def check(self, channel: str, now: float) -> int | None:
        """Seconds to wait (a 429's Retry-After) if a post to `channel` now is over a limit, else None."""
        waits = []
        if self.per_channel_per_second:
            posts = self.by_channel.setdefault(channel, deque())
            waits.append(_window_wait(posts, now, 1.0, self.per_channel_per_second))
        if self.workspace_per_minute:
            waits.append(_window_wait(self.workspace, now, 60.0, self.workspace_per_minute))
        wait = max((w for w in waits if w is not None), default=None)
        return None if wait is None else max(1, math.ceil(wait))

    def count(self, channel: str, now: float) -> None:
        """Count an accepted post."""
        self.by_channel.setdefault(channel, deque()).append(now)
        self.workspace.append(now)


FAULT_RATE_LIMITED = "429"
FAULT_SERVER_ERROR = "500"
FAULT_TIMEOUT = "timeout"


@dataclass
class _Chaos:
    """The seeded fault plan `chaos()` set: which calls fail, and how."""

    rate: float
    rng: random.Random
    hold_seconds: float
    spared: frozenset[str]

    def pick(self, method: str) -> str | None:
        """The fault for this call, or None to answer it normally (called with the fake's lock held)."""
        if method in self.spared or self.rng.random() >= self.rate:
            return None
        return self.rng.choice((FAULT_RATE_LIMITED, FAULT_SERVER_ERROR, FAULT_TIMEOUT))

    def reply(self, fault: str) -> _Reply:
        """What the caller gets; a timeout's answer comes after `hold_seconds` and nobody reads it."""
        if fault == FAULT_RATE_LIMITED:
            return _Reply(HTTPStatus.TOO_MANY_REQUESTS, {"ok": False, "error": "ratelimited"},
                          {"Retry-After": str(self.rng.choice((1, 2)))})
        if fault == FAULT_SERVER_ERROR:
            return _Reply(HTTPStatus.INTERNAL_SERVER_ERROR, "Internal Server Error")
        return _Reply(HTTPStatus.GATEWAY_TIMEOUT, "Gateway Timeout")


def _window_wait(posts: deque[float], now: float, window: float, limit: int) -> float | None:
    # A sliding window: posts older than `window` seconds no longer count.
    while posts and posts[0] <= now - window:
        posts.popleft()
    if len(posts) < limit:
        return None
    return posts[-limit] + window - now


def _ok(**fields: Any) -> dict:
    return {"ok": True, **fields}


def _error(error: str, **fields: Any) -> _Reply:
    return _Reply(HTTPStatus.OK, {"ok": False, "error": error, **fields})


def _rejected(error: str, messages: list[str]) -> _Reply:
    # Slack lists schema problems both ways, depending on the method and age
    # of the client, so answer with both and let either kind of caller look.
    metadata = {"messages": [f"[ERROR] {m}" for m in messages]}
    return _error(error, errors=messages, response_metadata=metadata)


class FakeSlack:
    """A fake Slack Web API served over HTTP on 127.0.0.1 (ephemeral port)."""

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        """Set up an empty workspace holding only the bot user; call `start()` to serve.

        `clock` (seconds, default `time.monotonic`) is what rate limits measure time by: a test can
        pass a clock it advances itself, so honouring a Retry-After needs no sleeping.
        """
        self.valid_tokens: set[str] = {DEFAULT_TOKEN}
        self.valid_app_tokens: set[str] = {DEFAULT_APP_TOKEN}
        self._bot_scopes: tuple[str, ...] = BOT_SCOPES
        self._socket_mode: SocketModeServer | None = None
        self._clock: Callable[[], float] = clock or time.monotonic
        self._rate_limits: _RateLimits | None = None
        self._chaos: _Chaos | None = None
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._failures: dict[str, list[_Failure]] = {}
        self._messages: dict[tuple[str, str], dict] = {}
        self._views: dict[str, dict] = {}
        self._opened_view_ids: list[str] = []
        self._homes: dict[str, dict] = {}
        self._users: dict[str, dict] = {}
        self._usergroups: dict[str, list[str]] = {}
        self._uploads: dict[str, dict] = {}  # files_upload_v2: file id -> name, bytes, where it was shared
        self._file_counter = itertools.count(1)
        self._ts_counter = itertools.count(1)
        self._view_counter = itertools.count(1)
        self._responders: dict[str, Responder] = self._builtin_responders()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.add_user(BOT_USER_ID, name=BOT_USER_NAME, real_name="Steward", is_bot=True)

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> FakeSlack:
        """Start serving in a daemon thread; returns self."""
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        # A short poll interval keeps stop() (run once per test) fast.
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop serving (Socket Mode too) and release the ports."""
        with self._lock:
            socket_mode, self._socket_mode = self._socket_mode, None
        if socket_mode is not None:
            socket_mode.stop()
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The TCP port the fake listens on."""
        if self._server is None:
            raise RuntimeError("FakeSlack is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """Web API base URL for `WebClient(base_url=...)`, ending in "/api/"."""
        return f"http://127.0.0.1:{self.port}/api/"

    def response_url(self, name: str) -> str:
        """A response_url for slash commands/interactions; posts are recorded as "response_url"."""
        return f"http://127.0.0.1:{self.port}/response/{name}"

    def start_socket_mode(self) -> SocketModeServer:
        """The Socket Mode server, started now unless `apps.connections.open` already started it."""
        with self._lock:
            return self._socket_mode_server()

    # -- workspace setup -----------------------------------------------------

    def add_user(
        self,
        user_id: str,
        *,
        name: str | None = None,
        real_name: str | None = None,
        is_bot: bool = False,
        deleted: bool = False,
        tz: str = "Europe/London",
        tz_offset: int = 0,
        tz_label: str | None = None,
        email: str | None = None,
    ) -> dict:
        """Register (or replace) a user that `users.info` will return; returns the user object."""
        name = name or user_id.lower()
        real_name = real_name or name
        profile: dict[str, Any] = {"display_name": name, "real_name": real_name}
        if email is not None:
            profile["email"] = email
        user = {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": name,
            "real_name": real_name,
            "is_bot": is_bot,
            "deleted": deleted,
            "tz": tz,
            "tz_label": tz_label or _tz_label(tz_offset),
            "tz_offset": tz_offset,
            "profile": profile,
        }
        with self._lock:
            self._users[user_id] = user
        return copy.deepcopy(user)

    def add_usergroup(self, handle_or_id: str, user_ids: list[str]) -> None:
        """Register a user group that `usergroups.users.list` will list."""
        with self._lock:
            self._usergroups[handle_or_id] = list(user_ids)

    def on(self, method: str, responder: Responder) -> None:
        """Answer `method` with `responder(args)` (a dict such as {"ok": True, ...})."""
        with self._lock:
            self._responders[method] = responder

    def fail_next(
        self,
        method: str,
        *,
        status: int | None = None,
        retry_after: int = 1,
        error: str | None = None,
        times: int = 1,
    ) -> None:
        """Make the next `times` calls to `method` fail.

        Default is HTTP 429 with Retry-After; `status=5xx` gives a plain-text
        server error; `error="..."` alone gives HTTP 200 `{"ok": false, "error": ...}`.
        """
        if status is None:
            status = HTTPStatus.OK if error else HTTPStatus.TOO_MANY_REQUESTS
        failure = _Failure(int(status), retry_after, error, times)
        with self._lock:
            self._failures.setdefault(method, []).append(failure)

    def grant_scopes(self, scopes: list[str]) -> None:
        """Replace the bot token's granted scopes (what `X-OAuth-Scopes` lists), e.g. to play a missing one."""
        with self._lock:
            self._bot_scopes = tuple(scopes)

    def enforce_rate_limits(self, *, per_channel_per_second: int | None = 1,
                            workspace_per_minute: int | None = None) -> None:
        """Rate-limit chat.postMessage as Slack does (off until called): more than
        `per_channel_per_second` posts to one channel within a second, or more than
        `workspace_per_minute` in the workspace within a minute, get HTTP 429 with Retry-After
        (whole seconds until the post would be accepted). Refused posts do not count.
        """
        with self._lock:
            self._rate_limits = _RateLimits(per_channel_per_second, workspace_per_minute)

    def chaos(self, *, rate: float, seed: int = 0, hold_seconds: float = 3.0,
              spared: frozenset[str] = frozenset({"auth.test"})) -> None:
        """Fault a `rate` fraction of Web API calls (chosen by a generator seeded with `seed`): each
        faulted call is answered, in equal shares, 429 with Retry-After 1 or 2 s, HTTP 500, or only
        after `hold_seconds` (longer than the client's timeout). A faulted call is never carried out.
        Methods in `spared` are always answered; `rate=0` turns chaos off."""
        if not 0 <= rate <= 1:
            raise ValueError(f"rate must be between 0 and 1, not {rate}")
        with self._lock:
            self._chaos = _Chaos(rate, random.Random(seed), hold_seconds, frozenset(spared)) if rate else None

    def faults(self) -> list[Call]:
        """The calls chaos answered with a fault, oldest first."""
        return [call for call in self.calls if call.fault is not None]

    def rate_limited(self) -> list[Call]:
        """The calls answered with a 429, oldest first."""
        return [call for call in self.calls if call.retry_after is not None]

    def reset(self) -> None:
        """Forget recorded calls and queued failures (users, messages and views stay)."""
        with self._lock:
            self._calls.clear()
            self._failures.clear()

    # -- inspection ------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        """Every call received so far, oldest first."""
        with self._lock:
            return list(self._calls)

    def calls_since(self, index: int) -> list[Call]:
        """The calls received after the first `index` (cheap to poll in a long, busy run: pass
        `len(fake.calls)` from before, or the last index seen plus what this returned)."""
        with self._lock:
            return self._calls[index:]

    def call_count(self) -> int:
        """How many calls were received so far."""
        with self._lock:
            return len(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        """The calls made to one method, oldest first."""
        return [call for call in self.calls if call.method == method]

    def last(self, method: str) -> Call:
        """The most recent call to `method`; AssertionError if there was none."""
        calls = self.calls
        for call in reversed(calls):
            if call.method == method:
                return call
        seen = sorted({call.method for call in calls}) or "nothing"
        raise AssertionError(f"no call to {method!r} was made; calls seen: {seen}")

    def messages(self, channel: str | None = None) -> list[dict]:
        """Posted messages in their latest state (after chat.update/delete), oldest first."""
        with self._lock:
            return [
                {"channel": msg_channel, **copy.deepcopy(message)}
                for (msg_channel, _), message in self._messages.items()
                if channel is None or msg_channel == channel
            ]

    def message(self, channel: str, ts: str) -> dict | None:
        """One posted message in its latest state, or None (cheaper than `messages()` in a busy workspace)."""
        with self._lock:
            message = self._messages.get((channel, ts))
            return {"channel": channel, **copy.deepcopy(message)} if message is not None else None

    def view(self, view_id: str) -> dict | None:
        """One view (opened, pushed, updated or published) in its latest state, or None."""
        with self._lock:
            view = self._views.get(view_id)
            return copy.deepcopy(view) if view is not None else None

    def views_opened(self) -> list[dict]:
        """Views opened with views.open, oldest first, in their latest state."""
        with self._lock:
            return [copy.deepcopy(self._views[view_id]) for view_id in self._opened_view_ids]

    def uploads(self, *, completed: bool = True) -> list[dict]:
        """Files uploaded through files_upload_v2 (by default only those completed), oldest first: each
        with "id", "filename", "title", "content" (bytes), "channel_id" and "initial_comment"."""
        with self._lock:
            return [copy.deepcopy(u) for u in self._uploads.values() if u["completed"] or not completed]

    def home(self, user_id: str) -> dict | None:
        """The App Home view last published for a user, or None."""
        with self._lock:
            return copy.deepcopy(self._homes.get(user_id))

    # -- request handling (called from server threads) -------------------------

    def _handle(self, path: str, args: Args, headers: dict[str, str]) -> _Reply:
        if path.startswith("/api/"):
            return self._handle_api(path.removeprefix("/api/"), args, headers)
        if path.startswith("/response/"):
            return self._handle_response_url(path.removeprefix("/response/"), args, headers)
        return _Reply(HTTPStatus.NOT_FOUND, "Not Found")

    def _handle_upload(self, file_id: str, raw_body: bytes) -> _Reply:
        # Step 2 of files_upload_v2: the bytes go to the URL files.getUploadURLExternal handed out.
        with self._lock:
            upload = self._uploads.get(file_id)
            if upload is None:
                return _Reply(HTTPStatus.NOT_FOUND, "Not Found")
            upload["content"] = raw_body
        return _Reply(HTTPStatus.OK, "OK - " + str(len(raw_body)))

    def _handle_api(self, method: str, args: Args, headers: dict[str, str]) -> _Reply:
        arg_token = args.pop("token", None)
        token = _bearer_token(headers) or arg_token
        with self._lock:
            now = self._clock()
            fault = self._chaos.pick(method) if self._chaos is not None else None
            reply = self._chaos.reply(fault) if fault else self._answer(method, args, token, now=now)
            scopes = self._scopes_of(token)
            if scopes is not None:
                reply = dataclasses.replace(reply, headers={**reply.headers, "X-OAuth-Scopes": ",".join(scopes)})
            retry_after = reply.headers.get("Retry-After") if reply.status == HTTPStatus.TOO_MANY_REQUESTS else None
            self._calls.append(Call(method, args, headers, token, failed=not reply.ok, at=now,
                                    retry_after=int(retry_after) if retry_after is not None else None,
                                    fault=fault))
            hold = self._chaos.hold_seconds if fault == FAULT_TIMEOUT and self._chaos is not None else 0.0
        if hold:
            time.sleep(hold)  # outside the lock: every other call carries on meanwhile
        return reply

    def _handle_response_url(self, name: str, args: Args, headers: dict[str, str]) -> _Reply:
        with self._lock:
            failure = self._take_failure("response_url")
            # Slack answers response_url posts with a bare "ok", not JSON.
            reply = failure.reply() if failure else _Reply(HTTPStatus.OK, "ok")
            call = Call("response_url", args, headers, None, failed=not reply.ok, name=name)
            self._calls.append(call)
        return reply

    def _answer(self, method: str, args: Args, token: str | None, *, now: float | None = None) -> _Reply:
        failure = self._take_failure(method)
        if failure:
            return failure.reply()
        if token not in self.valid_tokens and token not in self.valid_app_tokens:
            return _error("invalid_auth")
        if (token in self.valid_app_tokens) != (method in APP_TOKEN_METHODS):
            return _error("not_allowed_token_type")
        rejection = _validate(method, args)
        if rejection:
            return rejection
        limits = self._rate_limits if method == "chat.postMessage" else None
        channel = str(args.get("channel") or "")
        if limits is not None:
            wait = limits.check(channel, self._clock() if now is None else now)
            if wait is not None:
                return _Reply(HTTPStatus.TOO_MANY_REQUESTS, {"ok": False, "error": "ratelimited"},
                              {"Retry-After": str(wait)})
        responder = self._responders.get(method)
        if responder is None:
            # Slack answers unknown methods with HTTP 200, not 404.
            return _error("unknown_method")
        result = responder(args)
        reply = result if isinstance(result, _Reply) else _Reply(HTTPStatus.OK, result)
        if limits is not None and reply.ok:
            limits.count(channel, self._clock() if now is None else now)
        return reply

    def _scopes_of(self, token: str | None) -> tuple[str, ...] | None:
        if token in self.valid_app_tokens:
            return APP_TOKEN_SCOPES
        return self._bot_scopes if token in self.valid_tokens else None

    def _socket_mode_server(self) -> SocketModeServer:
        # Called with the lock held. Socket Mode is enabled in the sandbox app, as in slack-manifest.yml,
        # so the first client to ask for a URL starts the server (again, if a test stopped it).
        if self._socket_mode is None:
            self._socket_mode = SocketModeServer(app_id=APP_ID, response_url=self.response_url)
        return self._socket_mode.start()

    def _take_failure(self, method: str) -> _Failure | None:
        queue = self._failures.get(method)
        if not queue:
            return None
        failure = queue[0]
        failure.remaining -= 1
        if failure.remaining <= 0:
            queue.pop(0)
        return failure

    def _next_ts(self) -> str:
        micros = next(self._ts_counter) * _TS_STEP_MICROS
        seconds, fraction = divmod(micros, 1_000_000)
        return f"{_TS_EPOCH_SECONDS + seconds}.{fraction:06d}"

    # -- Web API methods (called with the lock held) -----------------------------

    def _builtin_responders(self) -> dict[str, Responder]:
        return {
            "auth.test": self._auth_test,
            "apps.connections.open": lambda args: _ok(url=self._socket_mode_server().issue_url()),
            "chat.postMessage": self._chat_post_message,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "views.open": self._views_open,
            "views.push": self._views_push,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "conversations.open": self._conversations_open,
            "conversations.history": self._conversations_history,
            "users.info": self._users_info,
            "usergroups.users.list": self._usergroups_users_list,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
        }

    def _auth_test(self, args: Args) -> dict:
        return _ok(
            url=TEAM_URL,
            team=TEAM_NAME,
            user=BOT_USER_NAME,
            team_id=TEAM_ID,
            user_id=BOT_USER_ID,
            bot_id=BOT_ID,
            is_enterprise_install=False,
        )

    def _chat_post_message(self, args: Args) -> dict | _Reply:
        problem = _missing_channel_or_text(args)
        if problem:
            return problem
        ts = self._next_ts()
        message = _bot_message(args, ts)
        self._messages[(args["channel"], ts)] = message
        return _ok(channel=args["channel"], ts=ts, message=copy.deepcopy(message))

    def _chat_post_ephemeral(self, args: Args) -> dict | _Reply:
        problem = _missing_channel_or_text(args)
        if problem:
            return problem
        if not args.get("user"):
            return _error("user_not_in_channel")
        return _ok(message_ts=self._next_ts())

    def _chat_update(self, args: Args) -> dict | _Reply:
        message = self._messages.get((args.get("channel"), args.get("ts")))
        if message is None:
            return _error("message_not_found")
        # Slack keeps the fields an update leaves out.
        for key in ("text", "blocks", "attachments", "metadata"):
            if key in args:
                message[key] = copy.deepcopy(args[key])
        message["edited"] = {"user": BOT_USER_ID, "ts": self._next_ts()}
        return _ok(
            channel=args["channel"],
            ts=args["ts"],
            text=message.get("text", ""),
            message=copy.deepcopy(message),
        )

    def _chat_delete(self, args: Args) -> dict | _Reply:
        if self._messages.pop((args.get("channel"), args.get("ts")), None) is None:
            return _error("message_not_found")
        return _ok(channel=args["channel"], ts=args["ts"])

    def _files_get_upload_url(self, args: Args) -> dict | _Reply:
        if not args.get("filename") or not str(args.get("length", "")).isdigit():
            return _error("invalid_arguments")
        file_id = f"F{next(self._file_counter):08d}"
        self._uploads[file_id] = {"id": file_id, "filename": args["filename"], "length": int(args["length"]),
                                  "title": "", "content": None, "completed": False, "channel_id": None,
                                  "initial_comment": None}
        return _ok(file_id=file_id, upload_url=f"http://127.0.0.1:{self.port}/upload/{file_id}")

    def _files_complete_upload(self, args: Args) -> dict | _Reply:
        files = args.get("files")
        if not isinstance(files, list) or not files:
            return _error("invalid_arguments")
        done = []
        for item in files:
            upload = self._uploads.get(str(item.get("id")))
            if upload is None or upload["content"] is None:
                return _error("file_not_found")
            upload.update(completed=True, title=item.get("title") or upload["filename"],
                          channel_id=args.get("channel_id"), initial_comment=args.get("initial_comment"))
            done.append({"id": upload["id"], "name": upload["filename"], "title": upload["title"],
                         "size": len(upload["content"])})
        return _ok(files=done)

    def _views_open(self, args: Args) -> dict | _Reply:
        if not args.get("trigger_id"):
            return _error("invalid_arguments")
        view = self._store_view(args["view"])
        self._opened_view_ids.append(view["id"])
        return _ok(view=view)

    def _views_push(self, args: Args) -> dict | _Reply:
        if not args.get("trigger_id"):
            return _error("invalid_arguments")
        return _ok(view=self._store_view(args["view"]))

    def _views_update(self, args: Args) -> dict | _Reply:
        view_id = args.get("view_id") or self._view_id_for_external(args.get("external_id"))
        if not view_id and not args.get("external_id"):
            return _error("invalid_arguments")
        # Unknown view ids are accepted: tests often update views whose ids
        # came from hand-written interaction payloads, never opened here.
        return _ok(view=self._store_view(args["view"], view_id=view_id))

    def _views_publish(self, args: Args) -> dict | _Reply:
        user_id = args.get("user_id")
        if not user_id:
            return _error("invalid_arguments")
        previous = self._homes.get(user_id)
        view = self._store_view(args["view"], view_id=previous and previous["id"])
        self._homes[user_id] = view
        return _ok(view=copy.deepcopy(view))

    def _store_view(self, submitted: dict, view_id: str | None = None) -> dict:
        view_id = view_id or f"V{next(self._view_counter):04d}"
        view = {
            "callback_id": "",
            "private_metadata": "",
            "external_id": "",
            "blocks": [],
            "clear_on_close": False,
            "notify_on_close": False,
            "root_view_id": view_id,
            "previous_view_id": None,
            **copy.deepcopy(submitted),
            "id": view_id,
            "team_id": TEAM_ID,
            "app_id": APP_ID,
            "bot_id": BOT_ID,
            "state": {"values": {}},
            "hash": f"{_TS_EPOCH_SECONDS}.{next(self._ts_counter):08d}",
        }
        self._views[view_id] = view
        return copy.deepcopy(view)

    def _view_id_for_external(self, external_id: str | None) -> str | None:
        if not external_id:
            return None
        for view_id, view in self._views.items():
            if view.get("external_id") == external_id:
                return view_id
        return None

    def _conversations_open(self, args: Args) -> dict | _Reply:
        if args.get("channel"):
            return _ok(channel={"id": args["channel"]}, already_open=True)
        users = _split_ids(args.get("users"))
        if not users:
            return _error("users_list_not_supplied")
        prefix = "D" if len(users) == 1 else "G"
        return _ok(channel={"id": prefix + "".join(users)}, no_op=False, already_open=False)

    def _conversations_history(self, args: Args) -> dict | _Reply:
        if not args.get("channel"):
            return _error("channel_not_found")
        limit = int(args.get("limit") or 100)
        with_metadata = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        found = sorted(((ts, message) for (channel, ts), message in self._messages.items()
                        if channel == args["channel"]), key=lambda item: float(item[0]), reverse=True)
        # Newest first, as Slack lists them; metadata only when asked for.
        messages = [{k: v for k, v in copy.deepcopy(message).items() if with_metadata or k != "metadata"}
                    for _, message in found[:limit]]
        return _ok(messages=messages, has_more=len(found) > limit)

    def _users_info(self, args: Args) -> dict | _Reply:
        user = self._users.get(args.get("user", ""))
        if user is None:
            return _error("user_not_found")
        return _ok(user=copy.deepcopy(user))

    def _usergroups_users_list(self, args: Args) -> dict | _Reply:
        users = self._usergroups.get(args.get("usergroup", ""))
        if users is None:
            return _error("no_such_subteam")
        return _ok(users=list(users))


# -- validation ---------------------------------------------------------------


def _validate(method: str, args: Args) -> _Reply | None:
    if method in MESSAGE_METHODS:
        return _validate_message(args)
    if method in VIEW_METHODS:
        return _validate_view(args.get("view"))
    return None


def _validate_message(args: Args) -> _Reply | None:
    text = args.get("text")
    if isinstance(text, str) and len(text) > MAX_TEXT_CHARS:
        return _error("msg_too_long")
    errors = _block_errors(args.get("blocks"), MAX_MESSAGE_BLOCKS, "/blocks")
    return _rejected("invalid_blocks", errors) if errors else None


def _validate_view(view: Any) -> _Reply | None:
    if not isinstance(view, dict) or not isinstance(view.get("type"), str):
        return _rejected("invalid_arguments", ["missing required field: type [json-pointer:/view/type]"])
    if view["type"] == "modal":
        title_error = _modal_title_error(view.get("title"))
        if title_error:
            return _rejected("invalid_arguments", [title_error])
    errors = _block_errors(view.get("blocks", []), MAX_VIEW_BLOCKS, "/view/blocks")
    return _rejected("invalid_blocks", errors) if errors else None


def _modal_title_error(title: Any) -> str | None:
    text = title.get("text") if isinstance(title, dict) else None
    if not isinstance(text, str):
        return "missing required field: title [json-pointer:/view/title]"
    if len(text) > MAX_MODAL_TITLE_CHARS:
        return f"must be less than {MAX_MODAL_TITLE_CHARS + 1} characters [json-pointer:/view/title/text]"
    return None


def _block_errors(blocks: Any, limit: int, pointer: str) -> list[str]:
    if blocks is None:
        return []
    if not isinstance(blocks, list):
        return [f"must be an array [json-pointer:{pointer}]"]
    errors = []
    if len(blocks) > limit:
        errors.append(f"no more than {limit} items allowed [json-pointer:{pointer}]")
    seen_ids: set[str] = set()
    for index, block in enumerate(blocks):
        where = f"{pointer}/{index}"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            errors.append(f"missing required field: type [json-pointer:{where}]")
            continue
        block_id = block.get("block_id")
        if block_id is not None:
            if block_id in seen_ids:
                errors.append(f"duplicate block_id {block_id!r} [json-pointer:{where}/block_id]")
            seen_ids.add(block_id)
        errors.extend(_long_text_errors(block, where))
    return errors


def _long_text_errors(node: Any, pointer: str) -> list[str]:
    if isinstance(node, dict):
        children = node.items()
    elif isinstance(node, list):
        children = enumerate(node)
    else:
        return []
    errors = []
    for key, value in children:
        where = f"{pointer}/{key}"
        if key == "text" and isinstance(value, str) and len(value) > MAX_TEXT_CHARS:
            errors.append(f"must be less than {MAX_TEXT_CHARS + 1} characters [json-pointer:{where}]")
        else:
            errors.extend(_long_text_errors(value, where))
    return errors


def _missing_channel_or_text(args: Args) -> _Reply | None:
    if not args.get("channel"):
        return _error("channel_not_found")
    if not any(args.get(key) for key in ("text", "blocks", "attachments")):
        return _error("no_text")
    return None


# -- small helpers ---------------------------------------------------------------


def _bot_message(args: Args, ts: str) -> dict:
    message = {
        "type": "message",
        "user": BOT_USER_ID,
        "bot_id": BOT_ID,
        "app_id": APP_ID,
        "team": TEAM_ID,
        "ts": ts,
        "text": args.get("text", ""),
    }
    for key in ("blocks", "attachments", "thread_ts", "metadata"):
        if key in args:
            message[key] = copy.deepcopy(args[key])
    return message


def _split_ids(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return []


def _tz_label(tz_offset: int) -> str:
    if tz_offset == 0:
        return "Greenwich Mean Time"
    sign = "+" if tz_offset > 0 else "-"
    hours, minutes = divmod(abs(tz_offset) // 60, 60)
    return f"UTC{sign}{hours:02d}:{minutes:02d}"


def _bearer_token(headers: dict[str, str]) -> str | None:
    for name, value in headers.items():
        if name.lower() == "authorization" and value.startswith("Bearer "):
            return value.removeprefix("Bearer ").strip()
    return None


def _parse_args(content_type: str, query: str, raw_body: bytes) -> Args:
    """Merge query-string and body arguments, decoding JSON-in-form values."""
    args: Args = dict(parse_qsl(query))
    media_type = content_type.split(";")[0].strip().lower()
    text = raw_body.decode("utf-8")
    if media_type == "application/json" and text.strip():
        body = json.loads(text)
        if not isinstance(body, dict):
            raise ValueError("JSON body must be an object")
        args.update(body)
    elif media_type == "application/x-www-form-urlencoded":
        args.update(parse_qsl(text, keep_blank_values=True))
    return {key: _decode_json_string(value) for key, value in args.items()}


def _decode_json_string(value: Any) -> Any:
    # slack_sdk form-encodes `blocks`, `view`, etc. as JSON strings; decode
    # them so tests always assert on real lists and dicts.
    if not isinstance(value, str) or value[:1] not in ("[", "{"):
        return value
    try:
        decoded = json.loads(value)
    except ValueError:
        return value
    return decoded if isinstance(decoded, (list, dict)) else value


class _Server(ThreadingHTTPServer):
    """The HTTP server, holding the fake its handlers report to."""

    daemon_threads = True
    # The default backlog of 5 makes bursts of parallel clients wait for
    # SYN retries (about a second each); Slack itself never refuses them.
    request_queue_size = 128
    fake: FakeSlack


class _Handler(BaseHTTPRequestHandler):
    """Turns HTTP requests into `FakeSlack._handle` calls."""

    server: _Server

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        """Serve a Web API or response_url request."""
        target = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        if target.path.startswith("/upload/"):
            self._send(self.server.fake._handle_upload(target.path.removeprefix("/upload/"), raw_body))
            return
        try:
            args = _parse_args(self.headers.get("Content-Type", ""), target.query, raw_body)
        except ValueError:
            self._send(_error("invalid_json"))
            return
        self._send(self.server.fake._handle(target.path, args, dict(self.headers.items())))

    # Slack accepts GET for read methods too.
    do_GET = do_POST

    def _send(self, reply: _Reply) -> None:
        if isinstance(reply.body, dict):
            payload, content_type = json.dumps(reply.body).encode(), "application/json; charset=utf-8"
        else:
            payload, content_type = reply.body.encode(), "text/plain; charset=utf-8"
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (a chaos timeout): there is nobody left to answer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Stay quiet: per-request logs would drown pytest's output."""
