"""Telemetry of Slack requests: a request id in every log line, and latency by listener.

`InstrumentedApp` is Bolt's App with these additions:

- `dispatch` gives each request an id (REQUEST_ID, workers/logs.py), so every line logged while it is
  handled carries it, and times it. Bolt's own global middleware cannot do this: in its dispatcher
  `next()` only raises a flag, and listeners run after the last middleware has returned.
- A global middleware, after Bolt's signature check, names the listener (`command:<subcommand>`,
  `action:<action_id>`, `view:<callback_id>`, `options:<action_id>`, `event:<type>`,
  `shortcut:<callback_id>`). Labels come only from signed requests, whose ids are ours, so a forger
  cannot mint label values; a request that fails the check counts as `unverified`.
- Its listener executor (`ContextExecutor`) carries the request's context into the listener's thread.
  In production (process_before_response off) Bolt answers Slack on `ack()` and lets the listener
  finish there: the request counts as done (REQUEST_SECONDS) when the last of its pieces has.
- The executor puts acks first. Bolt hands each listener to the executor and has the request thread
  wait for its `ack()`; with a small pool, the acks of new requests queued behind earlier listeners'
  work after their acks (searches, Slack calls), which at 64 concurrent requests cost seconds. Now every
  listener starts at once (the pool is as large as it needs to be), the request thread is woken the
  moment `ack()` is called (not by Bolt's 10 ms polling), and after their acks at most
  AFTER_ACK_SLOTS listeners per process run at once, so the work after acks cannot starve the next
  acks of the GIL and CPU.
- Work after an ack that can wait a moment goes on a `QuietLane`: a form's save (its modal says "Saving…"),
  and every answer sent through a response URL (a search, a card, a report). The lane starts it, one piece
  per lull, once no request in the process has waited for its ack for ACKS_FIRST_QUIET (`RequestTraffic`,
  counted by `bot.app.wsgi_app`), or after ACKS_FIRST_PATIENCE. In a burst the acks go first, and the
  answers follow it; work that opens a modal runs at once, as its trigger_id expires 3 s after the click.

ACK_SECONDS is observed the first time the request's `ack()` is called.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from slack_bolt import Ack, App, BoltRequest, BoltResponse

from bot.ids import Command
from workers.logs import REQUEST_ID
from workers.metrics import ACK_SECONDS, REQUEST_SECONDS

# Listener threads per process. Listeners waiting for an ack are at most one per gunicorn thread; the
# rest are listeners after their ack, waiting for or holding an AFTER_ACK_SLOTS slot. Generous, so an
# ack does not wait for a thread unless a burst leaves this many listeners unfinished: at 256, the full
# `bench --only ack` (512 requests per kind at 64 concurrent) filled the pool with waiting listeners and
# the acks' p99 rose from ~300 to ~850 ms. A waiting thread costs little memory (369 MiB after that run,
# 351 at 256). Past this, new acks queue for a thread: sustained load above what the work after the acks
# can keep up with needs more bot processes, not more threads.
LISTENER_THREADS = 1024
# Listeners running their work after the ack at once, per process. On `bench --only ack` (2 workers on
# 2 cores, 64 concurrent requests) 1, 2 or 4 slots gave like ack times, 8 or unbounded twice to four
# times slower ones: the work after acks took the GIL from the next acks. Four keeps most of the
# concurrency Bolt's own pool (5 threads) gave work that mostly waits on Slack.
AFTER_ACK_SLOTS = 4
# QuietLane work waits, at most ACKS_FIRST_PATIENCE, until this process has had no Slack request waiting for
# its ack for ACKS_FIRST_QUIET; each such lull starts one piece of work. On `bench --only ack` (2 cores shared
# with the client and PostgreSQL) a 5 ms lull came often inside a burst at 16 concurrent, whenever the client
# fell behind, and the searches it let in took the CPU from the next acks (p50 1.7-2.1x bare); 30 ms lulls
# do not come inside a burst, while one person's answer still starts 30 ms after their ack. Letting a lull
# start all the waiting work at once put concurrency 1 at p99 2.2-2.6x bare; one piece per lull, 0.6-1.4x.
# A burst of 512 requests at 16 lasts about 3 s, so 2 s of patience let a third of its work in early.
ACKS_FIRST_PATIENCE = 5.0
ACKS_FIRST_QUIET = 0.03
ACK_WAIT_SECONDS = 3.0  # Bolt's own ack timeout: after it, Bolt stops waiting and answers without the ack
MAX_LABEL = 64  # action and callback ids are ours and short; this only bounds a surprise
log = logging.getLogger("steward.bot")
SUBCOMMANDS = frozenset(c.value for c in Command)
UNVERIFIED = "unverified"


class InstrumentedApp(App):
    """Bolt's App, each request given an id for the logs and timed by listener (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(listener_executor=ContextExecutor(), **kwargs)
        self.use(_name_listener)  # after Bolt's built-in middleware, the signature check among them

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


class ContextExecutor(ThreadPoolExecutor):
    """Bolt's listener executor: each listener runs at once, in the submitting request's context, and the
    request thread returns as soon as the listener acks (see the module docstring)."""

    def __init__(self, max_workers: int = LISTENER_THREADS, after_ack_slots: int = AFTER_ACK_SLOTS) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix="listener")
        self._after_ack = threading.BoundedSemaphore(after_ack_slots)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Run `fn` in a copy of the caller's context; the request stays open until it returns."""
        scope, context, on_request_thread = _SCOPE.get(), contextvars.copy_context(), _SLOT.get() is None
        if scope is not None:
            scope.hold()

        def run() -> Any:
            slot = _Slot(self._after_ack)
            _SLOT.set(slot)  # in this listener's own copy of the context: its ack() takes the slot
            try:
                return fn(*args, **kwargs)
            finally:
                slot.give_back()
                if scope is not None:
                    scope.acked.set()  # a listener that failed before acking: Bolt has its answer now
                    scope.release()

        future = super().submit(context.run, run)
        if scope is not None and on_request_thread:
            # Bolt polls for the ack every 10 ms once this returns; wait here to be woken the moment it comes.
            scope.acked.wait(ACK_WAIT_SECONDS)
        return future


class _Slot:
    """One listener's claim on an after-ack slot: taken at its first ack(), given back when it ends."""

    def __init__(self, slots: threading.BoundedSemaphore) -> None:
        self._slots, self._taken = slots, False

    def take(self) -> None:
        """Wait for a free slot (Slack has its answer already), unless this listener holds one."""
        if not self._taken:
            self._slots.acquire()
            self._taken = True

    def give_back(self) -> None:
        """Free the slot, if this listener took one."""
        if self._taken:
            self._taken = False
            self._slots.release()


class RequestTraffic:
    """The Slack requests this process is handling (each is in flight until it is answered), and when one
    last arrived or was answered."""

    def __init__(self, quiet: float = ACKS_FIRST_QUIET) -> None:
        self._in_flight, self._last_change, self._quiet = 0, float("-inf"), quiet
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        """Count one request in flight while it is handled (on `steward serve`, until its ack is answered)."""
        with self._changed:
            self._in_flight += 1
            self._last_change = time.monotonic()
        try:
            yield
        finally:
            with self._changed:
                self._in_flight -= 1
                self._last_change = time.monotonic()  # the quiet spell counts from here: a next request
                # typically follows an answer within a millisecond
                if self._in_flight == 0:  # only then can it be quiet: waking waiters sooner is wasted GIL
                    self._changed.notify_all()

    def wait_for_quiet(self, patience: float, *, claim: bool = False) -> bool:
        """Wait until no request has been in flight for the quiet spell, at most `patience` seconds; whether
        it is quiet. With `claim`, the spell is used up: the next caller waits for a spell of its own, so a
        lull in a burst lets one piece of work start, not a crowd."""
        deadline = time.monotonic() + patience
        with self._changed:
            while True:
                now = time.monotonic()
                quiet_at = self._last_change + self._quiet
                if self._in_flight == 0 and now >= quiet_at:
                    if claim:
                        self._last_change = now
                    return True
                if now >= deadline:
                    return False
                self._changed.wait((min(deadline, quiet_at) if self._in_flight == 0 else deadline) - now)


TRAFFIC = RequestTraffic()  # this process's; `bot.app.wsgi_app` counts every request to /slack/events


class QuietLane:
    """Work after acks that can wait a moment (a form's save, whose modal says "Saving…" meanwhile; an answer
    through a response URL), started in order, one per lull in which no Slack request in this process waited
    for its ack, or once it has waited `patience`.
    Slack's 3 s deadline is on acks: in a burst each save's CPU (ours and the database's) would otherwise
    land in the next acks. Its own few threads, so waiting work holds no listener thread and wakes no crowd,
    and Slack's round trips overlap; the interpreter finishes what is queued before it exits."""

    def __init__(self, traffic: RequestTraffic = TRAFFIC, patience: float = ACKS_FIRST_PATIENCE,
                 workers: int = AFTER_ACK_SLOTS) -> None:
        self._traffic, self._patience = traffic, patience
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="quiet-lane")

    def submit(self, work: Callable[[], None]) -> Future:
        """Queue `work`, run in the caller's context (its request id in the logs)."""
        start_by, context = time.monotonic() + self._patience, contextvars.copy_context()

        def run() -> None:
            self._traffic.wait_for_quiet(max(0.0, start_by - time.monotonic()), claim=True)
            try:
                context.run(work)
            except Exception:
                log.exception("work after an ack failed")
        return self._pool.submit(run)


class _Scope:
    """One request in flight: its listener, when it started, and how many pieces of it are still running."""

    def __init__(self) -> None:
        self.listener, self.started = UNVERIFIED, time.perf_counter()
        self.acked = threading.Event()  # set by the first ack(), or when a listener ends without one
        self._running, self._lock = 1, threading.Lock()  # dispatch itself is the first piece

    def elapsed(self) -> float:
        """Seconds since the request reached the app."""
        return time.perf_counter() - self.started

    def hold(self) -> None:
        """Another piece (a listener on the executor) started."""
        with self._lock:
            self._running += 1

    def release(self) -> None:
        """A piece finished; the last one records how long the whole request took."""
        with self._lock:
            self._running -= 1
            done = self._running == 0
        if done:
            REQUEST_SECONDS.labels(listener=self.listener).observe(self.elapsed())


_SCOPE: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("steward_request_scope", default=None)
# Set only on listener threads (ContextExecutor): the after-ack slot the listener takes when it acks.
_SLOT: contextvars.ContextVar[_Slot | None] = contextvars.ContextVar("steward_after_ack_slot", default=None)


def _name_listener(req: BoltRequest, resp: BoltResponse, next: Callable[[], None]) -> BoltResponse:
    # Bolt injects arguments by name; handing back `resp` keeps the response Bolt started with.
    scope = _SCOPE.get()
    if scope is not None:
        scope.listener = listener_name(req.body or {})
    next()
    return resp


class _TimedAck(Ack):
    """Bolt's ack(), observing ACK_SECONDS and waking the request thread the first time it is called."""

    def __init__(self, scope: _Scope) -> None:
        super().__init__()
        self._scope, self._timed = scope, False

    def __call__(self, *args: Any, **kwargs: Any) -> BoltResponse:
        """Acknowledge, as Bolt's ack does."""
        if self._timed:
            return super().__call__(*args, **kwargs)
        self._timed = True
        ACK_SECONDS.labels(listener=self._scope.listener).observe(self._scope.elapsed())
        response = super().__call__(*args, **kwargs)
        self._scope.acked.set()  # wakes the request thread, which answers Slack
        slot = _SLOT.get()
        if slot is not None:
            slot.take()  # the rest of the listener waits its turn; the ack is on its way already
        return response


def _label(kind: str, value: Any) -> str:
    return f"{kind}:{str(value or 'unknown')[:MAX_LABEL]}"
