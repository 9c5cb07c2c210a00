"""Telemetry of Slack requests: a request id in every log line, and latency by listener.

`InstrumentedApp` is Bolt's App with these additions:

- `dispatch` gives each request an id (REQUEST_ID, workers/logs.py), so every line logged while it is
  handled carries it, and times it. Bolt's own global middleware cannot do this: in its dispatcher
  `next()` only raises a flag, and listeners run after the last middleware has returned.
- A global middleware, after Bolt's signature check, names the listener (`command:<subcommand>`,
  `action:<action_id>`, `view:<callback_id>`, `options:<action_id>`, `event:<type>`,
  `shortcut:<callback_id>`). Labels come only from signed requests, whose ids are ours, so a forger
  cannot mint label values; a request that fails the check counts as `unverified`.
- Listeners run on the request thread and return as soon as they have acked (Bolt's
  `process_before_response`, in HTTP and Socket Mode alike): the ack is answered the moment the listener
  returns, with no thread hand-off and none of Bolt's 10 ms polling for `ack()`. Work after the ack is
  handed on, to one of two places:
- Work that must start at once (opening a modal, whose trigger_id expires 3 s after the click; a change the
  person waits to see) goes to `AtOnce`: a few threads per process (AFTER_ACK_SLOTS), so the work after acks
  cannot starve the next acks of the GIL and CPU. It runs in the request's context, and the request counts
  as done (REQUEST_SECONDS) when the last of its pieces has.
- Work after an ack that can wait a moment goes on a `QuietLane`: a form's save (its modal says "Saving…"),
  and every answer sent through a response URL (a search, a card, a report). The lane starts it, one piece
  per lull, once no request in the server (every `steward serve` worker: bot/traffic.py) has waited for
  its ack for ACKS_FIRST_QUIET (`RequestTraffic`, counted by `bot.app.wsgi_app`), or after
  ACKS_FIRST_PATIENCE. In a burst the acks go first, and the answers follow it.

ACK_SECONDS is observed the first time the request's `ack()` is called.
"""

from __future__ import annotations

import contextvars
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from prometheus_client import Histogram
from slack_bolt import Ack, App, BoltRequest, BoltResponse
from slack_bolt.logger import get_bolt_app_logger
from slack_bolt.middleware import Middleware
from slack_sdk import WebClient
from slack_sdk.http_retry import default_retry_handlers

from bot.ids import Command
from bot.traffic import TRAFFIC, RequestTraffic
from workers.logs import REQUEST_ID
from workers.metrics import ACK_SECONDS, REQUEST_SECONDS

# Pieces of work after acks running at once (`AtOnce`), per process. On `bench --only ack` (2 workers on
# 2 cores, 64 concurrent requests) 1, 2 or 4 slots gave like ack times, 8 or unbounded twice to four
# times slower ones: the work after acks took the GIL from the next acks. Four keeps most of the
# concurrency Bolt's own pool (5 threads) gave work that mostly waits on Slack.
AFTER_ACK_SLOTS = 4
# QuietLane work waits, at most ACKS_FIRST_PATIENCE, until the server has had no Slack request waiting for
# its ack for ACKS_FIRST_QUIET (bot/traffic.py); each such lull starts one piece of work. On `bench --only ack` (2 cores shared
# with the client and PostgreSQL) a 5 ms lull came often inside a burst at 16 concurrent, whenever the client
# fell behind, and the searches it let in took the CPU from the next acks (p50 1.7-2.1x bare); 30 ms lulls
# do not come inside a burst, while one person's answer still starts 30 ms after their ack. Letting a lull
# start all the waiting work at once put concurrency 1 at p99 2.2-2.6x bare; one piece per lull, 0.6-1.4x.
# A burst of 512 requests at 16 lasts about 3 s, so 2 s of patience let a third of its work in early.
ACKS_FIRST_PATIENCE = 5.0
MAX_LABEL = 64  # action and callback ids are ours and short; this only bounds a surprise
log = logging.getLogger("steward.bot")
SUBCOMMANDS = frozenset(c.value for c in Command)
UNVERIFIED = "unverified"


class InstrumentedApp(App):
    """Bolt's App, each request given an id for the logs and timed by listener (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.use(_NameListener())  # after Bolt's built-in middleware, the signature check among them

    def _init_context(self, req: BoltRequest) -> None:
        """Bolt's own, except that the request's client is a copy of the app's rather than one built anew.

        Bolt gives each request a client of its own, so that a listener may change its token safely. Building
        a WebClient reads four proxy variables from the environment and formats a user agent: 15 µs, about a
        tenth of a search's ack in process. The copy has the same settings, and its own token, team and list
        of retry handlers, as Bolt's has (`tests/bot/test_telemetry.py` compares the two)."""
        req.context["logger"] = get_bolt_app_logger(app_name=self.name, base_logger=self._base_logger)
        req.context["token"] = self._token
        req.context["client"] = request_client(self._client, token=self._token, team_id=req.context.team_id)
        req.context["listener_runner"] = self.listener_runner

    def dispatch(self, req: BoltRequest) -> BoltResponse:
        """Handle one request, as Bolt does, inside its telemetry scope."""
        scope = _Scope()
        req.context["ack"] = _TimedAck(scope)
        # Only a label for log lines: uuid4's urandom system call was a GIL round trip in every request.
        request_token, scope_token = REQUEST_ID.set(f"{random.getrandbits(64):016x}"), _SCOPE.set(scope)
        try:
            return super().dispatch(req)
        finally:
            scope.release()
            _SCOPE.reset(scope_token)
            REQUEST_ID.reset(request_token)


def request_client(client: WebClient, *, token: str | None, team_id: str | None) -> WebClient:
    """A copy of `client` for one request, as Bolt's per-request client is: the same settings (headers
    included, shared as Bolt shares them), with its own token, team and list of retry handlers."""
    copy = WebClient.__new__(type(client))
    copy.__dict__.update(client.__dict__)
    copy.token = token
    copy.default_params = {} if team_id is None else {"team_id": team_id}
    copy.retry_handlers = default_retry_handlers() if client.retry_handlers is None else client.retry_handlers.copy()
    return copy


class ByListener:
    """A histogram's child for each listener, looked up once: `labels()` checks and locks on every call
    (4 µs, twice per request). Listener labels are bounded (see `listener_name`), so is this."""

    def __init__(self, histogram: Histogram) -> None:
        self._histogram, self._children = histogram, {}

    def observe(self, listener: str, seconds: float) -> None:
        """Observe `seconds` under this listener's label."""
        child = self._children.get(listener)
        if child is None:
            child = self._children.setdefault(listener, self._histogram.labels(listener=listener))
        child.observe(seconds)


ACKS, REQUESTS = ByListener(ACK_SECONDS), ByListener(REQUEST_SECONDS)


def listener_name(body: dict[str, Any]) -> str:
    """Which listener a request is for, as a metric label (bounded: free text never becomes a label)."""
    kind = body.get("type")
    if "command" in body:
        word = (body.get("text") or "").strip().partition(" ")[0].lower()
        # An empty command shows help, as does an unknown one (which users type freely).
        return f"command:{word if word in SUBCOMMANDS else ('help' if not word else 'unknown')}"
    if kind == "block_actions":
        actions = body.get("actions") or [{}]
        return _label("action", actions[0].get("action_id"))
    if kind in ("view_submission", "view_closed"):
        return _label("view", (body.get("view") or {}).get("callback_id"))
    if kind == "block_suggestion":
        return _label("options", body.get("action_id"))
    if kind == "event_callback":
        return _label("event", (body.get("event") or {}).get("type"))
    if kind in ("shortcut", "message_action"):
        return _label("shortcut", body.get("callback_id"))
    return _label("other", kind)


class AtOnce:
    """Work after an ack that must start at once (see the module docstring), on AFTER_ACK_SLOTS threads."""

    def __init__(self, workers: int = AFTER_ACK_SLOTS) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="after-ack")

    def submit(self, work: Callable[[], None]) -> Future:
        """Start `work` in the caller's context (its request id in the logs); the request lasts until it ends."""
        scope, context = _SCOPE.get(), contextvars.copy_context()
        if scope is not None:
            scope.hold()

        def run() -> None:
            try:
                _run_logged(work)
            finally:
                if scope is not None:
                    scope.release()
        return self._pool.submit(context.run, run)


class QuietLane:
    """Work after acks that can wait a moment (a form's save, whose modal says "Saving…" meanwhile; an answer
    through a response URL), started in order, one per lull in which no Slack request in the server waited
    for its ack, or once it has waited `patience`; once the server is idle (no burst going on), as fast as
    the runners take it.
    Slack's 3 s deadline is on acks: in a burst each save's CPU (ours and the database's) would otherwise
    land in the next acks. One gate thread waits for the lulls and hands each piece to a few runner threads,
    so Slack's round trips overlap while waiting work holds no thread and wakes nobody; the interpreter
    finishes what is queued before it exits. A waiting piece holds only its deadline, context and work:
    in a burst hundreds wait at once, and what they hold is what the cyclic collector walks again and again
    during it (with two futures each, a waiting search held 53 objects; now 21)."""

    def __init__(self, traffic: RequestTraffic = TRAFFIC, patience: float = ACKS_FIRST_PATIENCE,
                 workers: int = AFTER_ACK_SLOTS) -> None:
        self._traffic, self._patience = traffic, patience
        self._waiting: deque[tuple[float, contextvars.Context, Callable[[], None]]] = deque()
        self._lock, self._admitting = threading.Lock(), False
        self._gate = ThreadPoolExecutor(max_workers=1, thread_name_prefix="quiet-lane-gate")
        self._runners = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="quiet-lane")
        # Held from a piece's admission to its end: the gate admits no piece before a runner is free for
        # it, so none waits in the runners' queue, past the gate, when a burst starts.
        self._free_runners = threading.Semaphore(workers)

    def submit(self, work: Callable[[], None]) -> None:
        """Queue `work`, to run in the caller's context (its request id in the logs)."""
        with self._lock:
            self._waiting.append((time.monotonic() + self._patience, contextvars.copy_context(), work))
            if self._admitting:
                return
            self._admitting = True
        try:
            self._gate.submit(self._admit)
        except RuntimeError:  # the interpreter is exiting: nothing arrives after this, so admit it here
            self._admit()

    def _admit(self) -> None:
        """Start the waiting work in order, each piece in a lull of its own or once its patience is out."""
        while True:
            with self._lock:
                if not self._waiting:
                    self._admitting = False
                    return
                start_by, context, work = self._waiting.popleft()
            self._free_runners.acquire()
            if not self._traffic.is_idle():
                self._traffic.wait_for_quiet(max(0.0, start_by - time.monotonic()), claim=True)
            try:
                self._runners.submit(context.run, self._run, work)
            except RuntimeError:  # the interpreter is exiting: the runners take nothing new
                context.run(self._run, work)

    def _run(self, work: Callable[[], None]) -> None:
        try:
            _run_logged(work)
        finally:
            self._free_runners.release()


def _run_logged(work: Callable[[], None]) -> None:
    try:
        work()
    except Exception:
        log.exception("work after an ack failed")


class _Scope:
    """One request in flight: its listener, when it started, and how many pieces of it are still running."""

    def __init__(self) -> None:
        self.listener, self.started = UNVERIFIED, time.perf_counter()
        self._running, self._lock = 1, threading.Lock()  # dispatch itself is the first piece

    def elapsed(self) -> float:
        """Seconds since the request reached the app."""
        return time.perf_counter() - self.started

    def hold(self) -> None:
        """Another piece (work handed to `AtOnce`) started."""
        with self._lock:
            self._running += 1

    def release(self) -> None:
        """A piece finished; the last one records how long the whole request took."""
        with self._lock:
            self._running -= 1
            done = self._running == 0
        if done:
            REQUESTS.observe(self.listener, self.elapsed())


_SCOPE: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("steward_request_scope", default=None)

class _NameListener(Middleware):
    """Names the request's listener in its scope, once Bolt has checked the signature.

    A Middleware subclass, not a function: Bolt calls its `process` directly, where a function would
    first get every argument Bolt can inject built for it (~30, on every request)."""

    def process(self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], None]) -> BoltResponse:
        """Name the listener and go on; handing back `resp` keeps the response Bolt started with."""
        scope = _SCOPE.get()
        if scope is not None:
            scope.listener = listener_name(req.body or {})
        next()
        return resp


class _TimedAck(Ack):
    """Bolt's ack(), observing ACK_SECONDS the first time it is called."""

    def __init__(self, scope: _Scope) -> None:
        super().__init__()
        self._scope, self._timed = scope, False

    def __call__(self, *args: Any, **kwargs: Any) -> BoltResponse:
        """Acknowledge, as Bolt's ack does."""
        if self._timed:
            return super().__call__(*args, **kwargs)
        self._timed = True
        ACKS.observe(self._scope.listener, self._scope.elapsed())
        return super().__call__(*args, **kwargs)


def _label(kind: str, value: Any) -> str:
    return f"{kind}:{str(value or 'unknown')[:MAX_LABEL]}"
