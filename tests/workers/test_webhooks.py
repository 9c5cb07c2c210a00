"""Webhook provisioning against a real HTTP server on 127.0.0.1: the signed event, 2xx activating the grant,
failures retried via next_attempt_at (and found again by the sweep), giving up and telling the owner."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlmodel import select

from tests.factories import (
    OWNER,
    REQUESTER,
    grants_of,
    log_entries,
    make_asset,
    make_grant,
    make_request,
    members,
    outbox_rows,
    policy_with,
    reload_grant,
)
from tests.workers.conftest import run_message, take_messages
from workers.celery_app import make_celery
from workers.delivery import Outcome
from workers.tasks import (
    DELIVER_OUTBOX,
    PROVISION,
    PROVISIONING,
    SWEEP,
    decide,
    deliver_batch,
    provision,
    sweep_once,
)
from workers.webhooks import run_job
from workflows import access, provisioning
from workflows.db import transaction
from workflows.enums import GrantStatus, ProvisioningAction, ProvisioningStatus
from workflows.inventory import Actor
from workflows.models import ProvisioningJob

SECRET_ENV = "STEWARD_TEST_WEBHOOK_SECRET"
SECRET = "whsec-test-8c1f"
MINUTE = timedelta(minutes=1)


@dataclass
class Received:
    """One request the receiver got, and whether its signature checked out with the secret it knows."""

    path: str
    headers: dict[str, str]
    body: bytes
    signed: bool

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook endpoint: answers with the scripted statuses (200 once they run out) and verifies every
    signature with the secret from the environment, as a real receiver would."""

    url: str
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    hold: threading.Event | None = None  # set: requests wait for it (a receiver that hangs)


@pytest.fixture
def secret(monkeypatch) -> str:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    return SECRET


@pytest.fixture
def receiver(secret) -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            import os  # the receiver reads the secret the way the test set it, from the environment

            signed = provisioning.verify(secret=os.environ[SECRET_ENV],
                                         timestamp=self.headers.get("X-Steward-Timestamp", ""), body=body,
                                         signature=self.headers.get("X-Steward-Signature", ""))
            state.received.append(Received(self.path, dict(self.headers.items()), body, signed))
            if state.hold is not None:
                state.hold.wait(5)
            status, headers = state.answers.pop(0) if state.answers else (200, {})
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/steward/events"
    try:
        yield state
    finally:
        if state.hold is not None:
            state.hold.set()
        server.shutdown()
        server.server_close()


def webhook_policy(policy, url: str, **settings: Any):
    return policy_with(policy, connectors={"iam": {"type": "webhook", "url": url, "secret_env": SECRET_ENV,
                                                   **settings}},
                       provisioning_connector="iam")


@pytest.fixture
def ctx(context, policy, receiver):
    """The worker context with the webhook policy and the real renderer."""
    return replace(context, policy=webhook_policy(policy, receiver.url), renderer=None)


@pytest.fixture
def asset(engine, ctx, now):
    return make_asset(engine, policy=ctx.policy, now=now, kind="model", name="Fraud scorer")


def the_job(engine, grant, action=ProvisioningAction.GRANT) -> ProvisioningJob:
    with transaction(engine) as session:
        return session.exec(select(ProvisioningJob).where(ProvisioningJob.grant_id == grant.id,
                                                          ProvisioningJob.action == action)).one()


def rows_of(engine, ids: list[int]):
    return [r for r in outbox_rows(engine) if r.id in ids]


def deliver_all(ctx, engine) -> set[str]:
    """Deliver every outbox row in order (updates after the messages they redraw); the set of outcomes."""
    return set(deliver_batch(context=ctx, message_ids=[r.id for r in outbox_rows(engine)]))


def approved(engine, ctx, asset, now, **fields):
    """A request the owner approves through the decision task's function; returns (grant, enqueued job ids)."""
    request = make_request(engine, asset, policy=ctx.policy, now=now, members_of=members(), **fields)
    queued: list[int] = []
    decide(context=ctx, request_id=request.id, approver_id=OWNER, outcome="approve", enqueue_jobs=queued.extend)
    [grant] = grants_of(engine, request)
    return grant, queued


# ---- a 2xx -------------------------------------------------------------------------------------------


def test_a_2xx_activates_the_grant_after_a_signed_event(engine, ctx, fake, clock, now, receiver, asset):
    grant, queued = approved(engine, ctx, asset, now, level="use", duration_hours=48)
    job = the_job(engine, grant)
    assert grant.status == GrantStatus.PROVISIONING and queued == [job.id]  # enqueued after the approval
    clock.advance(seconds=5)

    ran = run_job(context=ctx, job_id=job.id)

    [hit] = receiver.received
    assert hit.signed and hit.path == "/steward/events"
    assert hit.headers["X-Steward-Timestamp"] == str(int(clock.now.timestamp()))
    assert hit.headers["X-Steward-Signature"].startswith("v1=") and hit.headers["Content-Type"] == "application/json"
    assert hit.event == {"event": "grant", "grant_id": grant.id, "asset": {"slug": "fraud-scorer", "kind": "model"},
                         "grantee": REQUESTER, "level": "use",
                         "expires_at": (clock.now + timedelta(hours=48)).isoformat(),
                         "request_id": grant.request_id, "occurred_at": now.isoformat()}
    assert ran.answer.ok
    stored = reload_grant(engine, grant)
    assert (stored.status, stored.expires_at) == (GrantStatus.ACTIVE, clock.now + timedelta(hours=48))
    job = the_job(engine, grant)
    assert (job.status, job.attempts, job.confirmed_by, job.completed_at) == (
        ProvisioningStatus.SUCCEEDED, 0, "steward", clock.now)
    assert "grant.provisioned" in [e.action for e in log_entries(engine)]

    # The grantee hears it is ready; the "being set up" news is redrawn.
    assert {r.payload.get("template") for r in rows_of(engine, ran.message_ids)} == {"grant_active", "redraw"}
    assert deliver_all(ctx, engine) <= {Outcome.SENT, Outcome.ALREADY_SENT}  # superseded redraws
    ready = fake.messages(f"D{REQUESTER}")[-1]
    assert "is set up and ready" in json.dumps(ready)
    news = [c.args for c in fake.calls_to("chat.update") if "was approved" in json.dumps(c.args)]
    assert news and "being set up" not in json.dumps(news[-1])
    assert run_job(context=ctx, job_id=job.id).answer is None  # done: a redelivered task sends nothing
    assert len(receiver.received) == 1


def test_a_500_is_retried_at_next_attempt_at_found_by_the_sweep_then_a_200_activates(
        engine, ctx, clock, now, receiver, asset):
    grant, _ = approved(engine, ctx, asset, now)
    job = the_job(engine, grant)
    receiver.answers = [(500, {})]

    assert run_job(context=ctx, job_id=job.id).answer.error == "http_500"

    job = the_job(engine, grant)
    assert (job.status, job.attempts, job.last_error, job.next_attempt_at) == (
        ProvisioningStatus.PENDING, 1, "http_500", now + MINUTE)
    assert reload_grant(engine, grant).status == GrantStatus.PROVISIONING
    assert run_job(context=ctx, job_id=job.id).answer is None  # not due yet: nothing sent
    assert len(receiver.received) == 1

    found: list[int] = []
    assert sweep_once(context=ctx, enqueue_due=lambda *_: None, enqueue_delivery=lambda ids: None,
                      enqueue_provision=found.append)[PROVISIONING] == 0
    clock.advance(minutes=1)
    counts = sweep_once(context=ctx, enqueue_due=lambda *_: None, enqueue_delivery=lambda ids: None,
                        enqueue_provision=found.append)
    assert counts[PROVISIONING] == 1 and found == [job.id]

    assert run_job(context=ctx, job_id=job.id).answer.ok
    assert [r.signed for r in receiver.received] == [True, True]
    assert reload_grant(engine, grant).status == GrantStatus.ACTIVE
    assert [e.action for e in log_entries(engine) if e.action.startswith("grant.provision")] == [
        "grant.provisioning_requested", "grant.provisioning_attempt_failed", "grant.provisioned"]


def test_failing_until_the_limit_fails_the_job_and_tells_the_owner(engine, ctx, fake, clock, now, receiver, asset):
    grant, _ = approved(engine, ctx, asset, now)
    receiver.answers = [(503, {})] * provisioning.MAX_ATTEMPTS
    messages: list[int] = []

    for _ in range(provisioning.MAX_ATTEMPTS):
        clock.now = the_job(engine, grant).next_attempt_at
        messages += run_job(context=ctx, job_id=the_job(engine, grant).id).message_ids

    job = the_job(engine, grant)
    assert (job.status, job.attempts, job.last_error) == (ProvisioningStatus.FAILED, 8, "http_503")
    assert len(receiver.received) == 8 and all(r.signed for r in receiver.received)
    assert reload_grant(engine, grant).status == GrantStatus.PROVISIONING
    clock.advance(days=1)
    assert sweep_once(context=ctx, enqueue_due=lambda *_: None, enqueue_delivery=lambda ids: None,
                      enqueue_provision=pytest.fail)[PROVISIONING] == 0
    [alert] = [r for r in outbox_rows(engine) if r.payload.get("template") == "provisioning_failed"]
    assert alert.user == OWNER and alert.id in messages
    assert deliver_all(ctx, engine) <= {Outcome.SENT, Outcome.ALREADY_SENT}  # superseded redraws
    owner_dm = fake.messages(f"D{OWNER}")[-1]
    assert "could not give" in json.dumps(owner_dm) and "http_503" in json.dumps(owner_dm)


def test_a_429_is_retried_after_what_it_asks(engine, ctx, now, receiver, asset):
    grant, _ = approved(engine, ctx, asset, now)
    receiver.answers = [(429, {"Retry-After": "300"})]
    assert run_job(context=ctx, job_id=the_job(engine, grant).id).answer.retry_after == 300
    job = the_job(engine, grant)
    assert (job.last_error, job.next_attempt_at) == ("http_429", now + timedelta(seconds=300))


@pytest.mark.parametrize("status", [302, 307])
def test_a_redirect_is_a_failure_and_is_not_followed(engine, ctx, now, receiver, asset, status):
    grant, _ = approved(engine, ctx, asset, now)
    receiver.answers = [(status, {"Location": receiver.url + "/elsewhere"})]
    assert run_job(context=ctx, job_id=the_job(engine, grant).id).answer.error == f"http_{status}"
    assert [r.path for r in receiver.received] == ["/steward/events"]


def test_no_connection_is_a_failed_attempt(engine, context, policy, now, secret):
    ctx = replace(context, policy=webhook_policy(policy, "http://127.0.0.1:9/nothing-listens-here"), renderer=None)
    asset = make_asset(engine, policy=ctx.policy, now=now)
    grant, _ = approved(engine, ctx, asset, now)
    answer = run_job(context=ctx, job_id=the_job(engine, grant).id).answer
    assert not answer.ok and answer.error.startswith("connection_error: ")
    assert the_job(engine, grant).attempts == 1


def test_a_receiver_that_hangs_times_out(engine, context, policy, now, receiver):
    ctx = replace(context, policy=webhook_policy(policy, receiver.url, timeout_seconds=0.3), renderer=None)
    asset = make_asset(engine, policy=ctx.policy, now=now)
    grant, _ = approved(engine, ctx, asset, now)
    receiver.hold = threading.Event()
    answer = run_job(context=ctx, job_id=the_job(engine, grant).id).answer
    assert answer.error == "connection_error: TimeoutError"


def test_a_missing_secret_sends_nothing_and_names_the_variable(engine, ctx, now, receiver, asset, monkeypatch,
                                                               caplog):
    grant, _ = approved(engine, ctx, asset, now)
    monkeypatch.delenv(SECRET_ENV)
    answer = run_job(context=ctx, job_id=the_job(engine, grant).id).answer
    assert SECRET_ENV in answer.error and receiver.received == []
    assert the_job(engine, grant).last_error == answer.error


def test_the_secret_is_never_logged_or_stored(engine, ctx, clock, now, receiver, asset, caplog):
    caplog.set_level(logging.DEBUG)
    grant, _ = approved(engine, ctx, asset, now)
    receiver.answers = [(500, {})]
    run_job(context=ctx, job_id=the_job(engine, grant).id)
    clock.advance(minutes=1)
    run_job(context=ctx, job_id=the_job(engine, grant).id)
    assert SECRET not in caplog.text
    stored = json.dumps([e.after for e in log_entries(engine)]) + repr(the_job(engine, grant))
    assert SECRET not in stored


def test_ending_a_provisioned_grant_sends_a_revoke_event(engine, ctx, clock, now, receiver, asset):
    grant, _ = approved(engine, ctx, asset, now)
    run_job(context=ctx, job_id=the_job(engine, grant).id)
    clock.advance(hours=2)
    with transaction(engine) as session:
        access.revoke_grant(session=session, grant_id=grant.id, actor=Actor(OWNER), reason="Left the team",
                            now=clock.now, policy=ctx.policy)
        queued = provisioning.added_job_ids(session)
    revoke_job = the_job(engine, grant, ProvisioningAction.REVOKE)
    assert queued == [revoke_job.id]

    assert run_job(context=ctx, job_id=revoke_job.id).answer.ok

    assert [r.event["event"] for r in receiver.received] == ["grant", "revoke"]
    assert receiver.received[1].event["expires_at"] == clock.now.isoformat()  # when it ended
    assert the_job(engine, grant, ProvisioningAction.REVOKE).status == ProvisioningStatus.SUCCEEDED
    assert log_entries(engine)[-1].action == "grant.deprovisioned"


def test_an_expiry_enqueues_its_revoke(engine, ctx, clock, now, receiver, asset):
    from workers.tasks import run_due_item

    grant, _ = approved(engine, ctx, asset, now, duration_hours=24)
    run_job(context=ctx, job_id=the_job(engine, grant).id)
    clock.advance(hours=24)
    queued: list[int] = []
    run_due_item(context=ctx, kind="grant_expiry", item_id=grant.id, enqueue_jobs=queued.extend)
    assert reload_grant(engine, grant).status == GrantStatus.EXPIRED
    assert queued == [the_job(engine, grant, ProvisioningAction.REVOKE).id]


# ---- the tasks -----------------------------------------------------------------------------------------


def test_the_sweep_task_enqueues_a_due_job_and_provision_is_a_thin_task(engine, ctx, settings, clock, now,
                                                                         receiver, asset, fresh_celery):
    app = make_celery(settings, context=ctx)
    grant = make_grant(engine, asset, policy=ctx.policy, now=now)  # written by a test: nothing enqueued yet
    job = the_job(engine, grant)
    assert take_messages(app) == []

    counts = app.tasks[SWEEP].run()

    assert counts[PROVISIONING] == 1
    [task] = [m for m in take_messages(app) if m.headers["task"] == PROVISION]
    assert task.decode()[0] == [job.id]
    ids = run_message(app, task)
    assert reload_grant(engine, grant).status == GrantStatus.ACTIVE
    [delivery] = take_messages(app)
    assert delivery.headers["task"] == DELIVER_OUTBOX and delivery.decode()[0] == [ids]
    assert provision(job.id) == []  # again: not due, nothing sent
    assert len(receiver.received) == 1
