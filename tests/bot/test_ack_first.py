"""Acks come first: with Bolt answering on ack (as `steward serve` runs it), a listener still busy after its
ack never delays the ack of the next request (bot/telemetry.py's executor)."""

from __future__ import annotations

import threading
import time

from slack_sdk import WebClient

from bot.app import create_app
from bot.telemetry import AFTER_ACK_SLOTS
from tests.bot.conftest import TOKEN, Harness

# More listeners stuck after their acks than Bolt's own pool (5 threads) or the after-ack slots hold.
STUCK = max(5, AFTER_ACK_SLOTS) + 3
ACK_BUDGET_SECONDS = 1.0  # Slack's is 3 s; an ack queued behind the stuck listeners would take that long


def test_acks_do_not_wait_for_listeners_busy_after_their_acks(harness):
    app = create_app(harness.ctx, client=WebClient(token=TOKEN, base_url=harness.fake.url),
                     process_before_response=False)
    acking = Harness(app=app, fake=harness.fake, ctx=harness.ctx, enqueued=harness.enqueued)
    release, opened = threading.Event(), threading.Semaphore(0)

    def slow_views_open(args):  # each listener opens its modal after the ack, then waits here
        opened.release()
        release.wait(10)
        return {"ok": True, "view": {"id": "V1"}}

    harness.fake.on("views.open", slow_views_open)
    try:
        for _ in range(STUCK):
            started = time.perf_counter()
            response = acking.command("register dataset")
            assert response.status == 200
            assert time.perf_counter() - started < ACK_BUDGET_SECONDS
    finally:
        release.set()
    # Every listener went on to its work after the ack (the later ones once a slot was free).
    for _ in range(STUCK):
        assert opened.acquire(timeout=10)
