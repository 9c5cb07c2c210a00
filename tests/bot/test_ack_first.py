"""Acks come first: wired as `steward serve` wires it, work still running after an ack (on `AtOnce`,
bot/telemetry.py) never delays the ack of the next request, and work nobody watches waits on the quiet
lane until no request waits for its ack."""

from __future__ import annotations

import contextlib
import gc
import io
import json
import threading
import time
import types

from slack_bolt import App

from bot import app as bot_app
from bot import traffic as bot_traffic
from bot.context import BotContext
from bot.telemetry import AFTER_ACK_SLOTS, QuietLane
from bot.traffic import RequestTraffic
from steward.server import counted_socket_mode_handler
from tests.bot.conftest import as_in_production, block_action
from tests.factories import make_asset
from workers.logs import REQUEST_ID

# More pieces of work stuck after their acks than AtOnce has threads.
STUCK = max(5, AFTER_ACK_SLOTS) + 3
ACK_BUDGET_SECONDS = 1.0  # Slack's is 3 s; an ack queued behind the stuck listeners would take that long


def test_acks_do_not_wait_for_listeners_busy_after_their_acks(harness):
    acking = as_in_production(harness)
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


def test_the_quiet_lane_runs_its_work_once_no_request_waits_for_its_ack():
    traffic = RequestTraffic(quiet=0)
    lane, order, done = QuietLane(traffic, patience=60), [], threading.Event()
    with traffic.request():
        lane.submit(lambda: (order.append("saved"), done.set()))
        assert not done.wait(0.3)  # a request is still waiting for its ack
        order.append("acked")
    assert done.wait(10)
    assert order == ["acked", "saved"]


def test_the_quiet_lane_waits_no_longer_than_its_patience():
    traffic = RequestTraffic(quiet=0)
    lane, done = QuietLane(traffic, patience=0.05), threading.Event()
    with traffic.request():  # a request that never gets its ack, as in a burst that does not end
        lane.submit(done.set)
        assert done.wait(10)


def test_the_quiet_lane_keeps_the_request_context_and_survives_a_failure(caplog):
    # One runner: the failing piece has been logged before the next one runs.
    lane, seen, done = QuietLane(RequestTraffic(quiet=0), patience=1, workers=1), [], threading.Event()
    token = REQUEST_ID.set("req-42")
    try:
        lane.submit(lambda: 1 / 0)
        lane.submit(lambda: (seen.append(REQUEST_ID.get()), done.set()))
    finally:
        REQUEST_ID.reset(token)
    assert done.wait(10)
    assert seen == ["req-42"]  # its log lines carry the request's id
    assert "work after an ack failed" in caplog.text  # logged, and the lane went on


def test_answers_through_a_response_url_wait_behind_the_acks_and_modals_open_at_once(harness, engine, bot_policy,
                                                                                  now):
    asset = make_asset(engine, policy=bot_policy, now=now, name="Churn events")
    queued = []
    harness.ctx.after_ack = queued.append  # hold the work after the ack, as the quiet lane may
    for text in ("search churn", "asset churn-events", "mine"):
        assert harness.command(text).status == 200
    harness.interact(block_action("asset_show", str(asset.id), response_url=harness.fake.response_url("list")))
    assert len(queued) == 4 and not harness.fake.calls_to("response_url")  # acked; nothing answered yet
    for work in queued:
        work()
    answers = [json.dumps(call.args) for call in harness.fake.calls_to("response_url")]
    assert len(answers) == 4 and all("churn-events" in answer for answer in answers)

    # A trigger_id expires 3 s after the click: what opens a modal never waits behind other acks.
    harness.command("register model")
    harness.interact(block_action("asset_show", str(asset.id)))  # from App Home: the card opens as a modal
    assert len(queued) == 4 and len(harness.fake.calls_to("views.open")) == 2


def _reachable(root: object) -> set[int]:
    """Ids of what `root` holds on to: through closures, containers and instances (not modules, classes,
    a function's globals, the app or its context, which live as long as the process)."""
    seen, todo = set(), [root]
    while todo:
        item = todo.pop()
        if id(item) in seen or isinstance(item, type | types.ModuleType | BotContext | App):
            continue
        seen.add(id(item))
        if isinstance(item, types.FunctionType):
            todo += [cell.cell_contents for cell in item.__closure__ or ()]
        else:
            todo += gc.get_referents(item)
    return seen


def test_an_answer_waiting_behind_the_acks_holds_neither_the_payload_nor_the_request_s_client(harness, engine,
                                                                                            bot_policy, now):
    """In a burst hundreds of answers wait at once, and what they hold stays allocated to its end: a waiting
    search held 4.0 KB with its payload and its request's WebClient, 1.9 KB without."""
    asset = make_asset(engine, policy=bot_policy, now=now, name="Churn events")
    requests: list[tuple[dict, object]] = []

    @harness.app.middleware
    def remember(body, context, next) -> None:
        requests.append((body, context.client))
        next()

    queued: list = []
    harness.ctx.after_ack = queued.append
    harness.command("search churn")
    harness.interact(block_action("asset_show", str(asset.id), response_url=harness.fake.response_url("list")))
    assert len(queued) == len(requests) == 2
    for work, (body, client) in zip(queued, requests):
        held = _reachable(work)
        assert id(body) not in held and id(client) not in held
    for work in queued:
        work()
    assert all("churn-events" in json.dumps(call.args) for call in harness.fake.calls_to("response_url"))
    assert len(harness.fake.calls_to("response_url")) == 2


def test_a_lull_lets_one_piece_of_work_start_and_the_next_waits_for_a_lull_of_its_own():
    traffic = RequestTraffic(quiet=0.05)
    assert traffic.wait_for_quiet(0, claim=True)  # nothing has happened yet
    assert not traffic.wait_for_quiet(0, claim=True)  # that lull is used up
    assert traffic.wait_for_quiet(10, claim=True)  # the next one comes 50 ms later
    assert traffic.wait_for_quiet(10) and traffic.wait_for_quiet(0)  # without a claim, the lull lasts


def test_every_request_to_the_events_path_counts_while_it_is_handled(monkeypatch):
    counts = []

    class Recording(RequestTraffic):
        @contextlib.contextmanager
        def request(self):
            counts.append("in")
            yield
            counts.append("out")
    monkeypatch.setattr(bot_app, "TRAFFIC", Recording())
    application = bot_app.wsgi_app(App(signing_secret="s", token="xoxb-t", token_verification_enabled=False))
    status = []
    application({"PATH_INFO": bot_app.EVENTS_PATH, "REQUEST_METHOD": "POST", "wsgi.input": io.BytesIO(b""),
                 "CONTENT_LENGTH": "0", "QUERY_STRING": ""}, lambda s, h: status.append(s))
    application({"PATH_INFO": "/healthz", "REQUEST_METHOD": "GET"}, lambda s, h: status.append(s))
    assert counts == ["in", "out"] and len(status) == 2  # the health check is not a Slack request


def test_quiet_means_no_request_for_the_whole_spell_counted_from_the_last_answer():
    traffic = RequestTraffic(quiet=60)
    assert traffic.wait_for_quiet(0)  # nothing has happened yet
    with traffic.request():
        pass
    assert not traffic.wait_for_quiet(0.01)  # answered just now: the next request may be on its way
    brief = RequestTraffic(quiet=0)
    with brief.request():
        assert not brief.wait_for_quiet(0.01)  # one in flight
    assert brief.wait_for_quiet(0)


def test_socket_mode_requests_count_until_their_answer_is_sent(monkeypatch):
    seen = []

    class Base:
        def handle(self, client, req):
            seen.append(("in flight", bot_traffic.TRAFFIC.wait_for_quiet(0)))

    monkeypatch.setattr(bot_traffic, "TRAFFIC", RequestTraffic(quiet=0))
    counted_socket_mode_handler(Base)().handle(client=None, req=None)
    assert seen == [("in flight", False)]  # not quiet while the request is handled and answered
    assert bot_traffic.TRAFFIC.wait_for_quiet(0)  # quiet again once it was


def test_on_an_idle_server_the_quiet_lane_starts_work_as_fast_as_its_runners_take_it():
    # Each piece uses a lull up (the next would come 60 s later), but no request has come: no burst is on.
    traffic = RequestTraffic(quiet=60)
    lane, started, finish = QuietLane(traffic, patience=5, workers=3), [], threading.Event()
    all_running, fourth = threading.Barrier(4), threading.Event()
    for n in range(3):
        lane.submit(lambda n=n: (started.append(n), all_running.wait(10), finish.wait(10)))
    lane.submit(fourth.set)
    all_running.wait(4)  # three at once, none with a lull of its own (nor out of patience)
    assert sorted(started) == [0, 1, 2] and not fourth.is_set()  # the fourth waits for a free runner
    with traffic.request():  # a burst starts before a runner is free
        finish.set()
        assert not fourth.wait(0.3)  # a runner is free, but the fourth now waits for a lull
    assert fourth.wait(10)  # or for its patience


def test_the_quiet_lane_starts_its_work_in_the_order_it_came():
    traffic = RequestTraffic(quiet=0.02)  # one piece per 20 ms lull: each has started before the next may
    lane, started, done = QuietLane(traffic, patience=60), [], threading.Semaphore(0)
    with traffic.request():
        for n in range(8):
            lane.submit(lambda n=n: (started.append(n), done.release()))
        assert started == []
    for _ in range(8):
        assert done.acquire(timeout=10)
    assert started == list(range(8))  # one gate takes them in turn; the runners only run them
