"""Request traffic: how many Slack requests wait for their ack, and when one last arrived or was answered.

The quiet lane (`bot.telemetry.QuietLane`) starts work after acks only in a lull, when no request has waited
for its ack for ACKS_FIRST_QUIET. `steward serve`'s worker processes share the machine's cores, so a lull
must be one of the whole server: at concurrency 1 on two workers, each saw a lull whenever the client's next
requests went to the other, and the answers it then started slowed those acks (`bench --only ack`, c1 p99
1.7-3.0× bare, 1.2-1.5× with no lulls at all). So the workers publish their counts on a `TrafficBoard`,
memory the gunicorn master maps before it forks them, one slot per worker, and every lane reads all slots.

The request path only writes: nobody is woken at each answer. At hundreds of answers a second, waking the
lane every time took the GIL from the next ack; the lane looks again once a quiet spell at most.

A lull lets one piece of work start (its claim uses the lull up for every process). Once no request has come
for ACKS_FIRST_IDLE, the burst is over, and the lane needs no lull per piece: one per lull after a burst of 256
requests kept the last answer waiting 5-6 s, at ~33 pieces a second per process on an idle server.
"""

from __future__ import annotations

import ctypes
import math
import multiprocessing
import threading
import time
from dataclasses import dataclass

# See bot/telemetry.py for how these were chosen.
ACKS_FIRST_QUIET = 0.03
ACKS_FIRST_IDLE = 0.25  # eight quiet spells: a burst of Slack requests has no gap this long
QUIET_POLL_SECONDS = 0.01  # how often a quiet spell shorter than this is looked for


_CELLS = 3  # per slot: Traffic's three figures


@dataclass(frozen=True)
class Traffic:
    """Requests waiting for their ack, when one last arrived or was answered, and when a lull was last claimed."""

    in_flight: int = 0
    last_change: float = -math.inf
    last_claim: float = -math.inf


class TrafficBoard:
    """Each process's requests in flight, when one last arrived or was answered, and when it last claimed a
    lull (time.monotonic, which is machine-wide), in shared memory that forked processes inherit. Each slot is
    written only by the process holding it."""

    def __init__(self, slots: int) -> None:
        self._shared = multiprocessing.RawArray(ctypes.c_double, _CELLS * slots)
        # The same memory as doubles through a memoryview: half the cost of indexing the ctypes array.
        self._cells = memoryview(self._shared).cast("B").cast("d")
        for slot in range(slots):
            self._cells[_CELLS * slot + 1] = self._cells[_CELLS * slot + 2] = -math.inf
        self._free = list(range(slots))

    def take_slot(self) -> int:
        """A free slot, for a process about to be forked (called in the parent)."""
        if not self._free:
            raise RuntimeError("no free traffic slot: more processes than the board was made for")
        return self._free.pop(0)

    def free_slot(self, slot: int) -> None:
        """A process has exited: whatever it had in flight is gone, and its slot can be taken again."""
        self._cells[_CELLS * slot] = 0
        self._free.append(slot)

    def write(self, slot: int, in_flight: int, last_change: float, last_claim: float) -> None:
        """Publish one process's traffic (each figure is a single aligned 8-byte store)."""
        base = _CELLS * slot
        self._cells[base], self._cells[base + 1], self._cells[base + 2] = in_flight, last_change, last_claim

    def read(self) -> Traffic:
        """Requests in flight in every process, and the latest change and claim among them."""
        cells = self._cells.tolist()
        return Traffic(int(sum(cells[0::_CELLS])), max(cells[1::_CELLS]), max(cells[2::_CELLS]))


class RequestTraffic:
    """The Slack requests this process is handling (each is in flight until it is answered), when one last
    arrived or was answered, and when this process's quiet lane last claimed a lull; once `share`d, those of
    every process on the board. `idle` is never shorter than `quiet`."""

    def __init__(self, quiet: float = ACKS_FIRST_QUIET, idle: float = ACKS_FIRST_IDLE) -> None:
        self._in_flight, self._last_change, self._last_claim = 0, -math.inf, -math.inf
        self._quiet, self._idle = quiet, max(quiet, idle)
        self._lock = threading.Lock()
        self._board: TrafficBoard | None = None
        self._slot = 0

    def share(self, board: TrafficBoard, slot: int) -> None:
        """Publish this process's traffic in `slot` of `board`, and wait for lulls of the whole board."""
        with self._lock:
            self._board, self._slot = board, slot
            self._publish()

    def request(self) -> RequestTraffic:
        """Count one request in flight while it is handled (on `steward serve`, until its ack is answered):
        `with traffic.request(): ...`. A plain context manager, not a generator: that cost 3 µs a request."""
        return self

    def __enter__(self) -> None:
        self._change(+1)

    def __exit__(self, *_exc: object) -> None:
        # The quiet spell counts from the answer: a next request typically follows within a millisecond.
        self._change(-1)

    def is_idle(self) -> bool:
        """Whether no request has been in flight for the idle spell: no burst is going on."""
        traffic = self._read()
        return traffic.in_flight == 0 and time.monotonic() >= traffic.last_change + self._idle

    def wait_for_quiet(self, patience: float, *, claim: bool = False) -> bool:
        """Wait until no request has been in flight for the quiet spell, at most `patience` seconds; whether
        it is quiet. With `claim`, the spell is used up: the next caller waits for a spell of its own, so a
        lull in a burst lets one piece of work start, not a crowd."""
        deadline = time.monotonic() + patience
        while True:
            with self._lock:
                traffic = self._read()
                in_flight, now = traffic.in_flight, time.monotonic()
                quiet_at = max(traffic.last_change, traffic.last_claim) + self._quiet
                if in_flight == 0 and now >= quiet_at:
                    if claim:
                        self._last_claim = now
                        self._publish()
                    return True
            if now >= deadline:
                return False
            # A spell that starts from now on ends no sooner than a spell from now: look again then.
            wake = quiet_at if in_flight == 0 else now + max(self._quiet, QUIET_POLL_SECONDS)
            time.sleep(min(deadline, wake) - now)

    def _change(self, delta: int) -> None:
        with self._lock:
            self._in_flight += delta
            self._last_change = time.monotonic()
            self._publish()

    def _read(self) -> Traffic:
        if self._board is not None:
            return self._board.read()
        return Traffic(self._in_flight, self._last_change, self._last_claim)

    def _publish(self) -> None:
        if self._board is not None:
            self._board.write(self._slot, self._in_flight, self._last_change, self._last_claim)


TRAFFIC = RequestTraffic()  # this process's; `bot.app.wsgi_app` counts every request to /slack/events
