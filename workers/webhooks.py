"""Webhook provisioning: claim a due job, POST its signed event, and record the answer.

One call is one attempt. The claim (workflows.provisioning.claim_webhook_job) is committed before the
HTTP call, so no database lock is held across it and two workers never send one job at once; if the
worker dies mid-call, the claim lapses and the sweep finds the job due again. The answer is recorded
with `complete_job`: a 2xx activates the grant (or records the revoke); anything else (another status,
a redirect, a timeout, no connection, a missing secret) is a failed attempt that the job retries with
backoff, honouring Retry-After on a 429. Nothing here sleeps or retries in place.

The signing secret is read from the environment variable the policy names, at send time, and never
logged or stored; neither is the response body. Errors are recorded by kind ("http_503",
"connection_error: TimeoutError"), never with the URL, which may carry a token in its query.
"""

from __future__ import annotations

import email.utils
import http.client
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from workers.celery_app import WorkerContext
from workflows import provisioning, queued
from workflows.access import SYSTEM_ACTOR, AlreadyDecided
from workflows.db import transaction
from workflows.enums import ConnectorType
from workflows.outbox import added_message_ids
from workflows.policy import LOOPBACK_HOSTS, Policy, webhook_url_problem
from workflows.provisioning import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookCall

logger = logging.getLogger(__name__)

USER_AGENT = "Steward-Provisioning/1"


@dataclass(frozen=True)
class Answer:
    """What one attempt came to: success, or the error to record and how long the other side asked us to wait."""

    ok: bool
    error: str = ""
    retry_after: float | None = None


@dataclass(frozen=True)
class Ran:
    """What `run_job` left for the edge to enqueue after commit: outbox rows and provisioning jobs."""

    message_ids: list[int]
    job_ids: list[int]
    answer: Answer | None = None  # None when the job was not claimed (not due, done, or someone else's)


def run_job(*, context: WorkerContext, job_id: int, environ: Mapping[str, str] | None = None) -> Ran:
    """One attempt at webhook job `job_id`, if it is due: claim, send, record."""
    now, policy = context.now(), context.get_policy()
    with transaction(context.engine) as session:
        queued.unmark(session=session, kind=provisioning.SWEEP_KIND, item_id=job_id)
        call = provisioning.claim_webhook_job(session=session, job_id=job_id, now=now)
    if call is None:
        return Ran([], [])
    answer = send(call, policy=policy, now=now, environ=os.environ if environ is None else environ)
    if answer.ok:
        logger.info("Provisioning job %s was carried out by %s", job_id, call.connector)
    else:
        logger.info("Provisioning job %s failed at %s: %s", job_id, call.connector, answer.error)
    try:
        with transaction(context.engine) as session:
            provisioning.complete_job(session=session, job_id=job_id, ok=answer.ok, error=answer.error,
                                      confirmed_by=SYSTEM_ACTOR if answer.ok else "",
                                      retry_after=answer.retry_after, now=now)
            return Ran(added_message_ids(session), provisioning.added_job_ids(session), answer)
    except AlreadyDecided as exc:
        # The access was revoked (the job cancelled) while the call was on the wire; its revoke job
        # follows this attempt.
        logger.info("Provisioning job %s was closed during the attempt: %s", job_id, exc)
        return Ran([], [], answer)


def send(call: WebhookCall, *, policy: Policy, now: datetime, environ: Mapping[str, str]) -> Answer:
    """POST the signed event to the connector's URL and classify the answer."""
    connector = policy.connectors.get(call.connector)
    if connector is None or connector.type is not ConnectorType.WEBHOOK or not connector.url:
        return Answer(False, f"connector '{call.connector}' is no longer a webhook in the policy")
    problem = webhook_url_problem(connector.url)
    if problem:  # the policy is validated at load; this guards a policy built some other way
        return Answer(False, f"connector '{call.connector}': {problem}")
    secret = environ.get(connector.secret_env or "", "")
    if not secret:
        return Answer(False, f"the environment variable {connector.secret_env} (the signing secret) is not set")
    body = provisioning.event_body(call.event)
    timestamp = str(int(now.timestamp()))
    request = urllib.request.Request(connector.url, data=body, method="POST", headers={
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: provisioning.sign(secret=secret, timestamp=timestamp, body=body),
    })
    try:
        with _opener(connector.url).open(request, timeout=connector.timeout_seconds) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        retry_after = _retry_after(exc.headers.get("Retry-After"), now) if exc.code == 429 else None
        exc.close()
        return Answer(False, f"http_{exc.code}", retry_after)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        # URLError, timeouts, refused and dropped connections: the other side may be back in a minute.
        return Answer(False, f"connection_error: {type(exc).__name__}")
    if 200 <= status < 300:
        return Answer(True)
    return Answer(False, f"http_{status}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is a failed attempt, never a new address to send a signed event to."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _opener(url: str) -> urllib.request.OpenerDirector:
    handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
    if urlsplit(url).hostname in LOOPBACK_HOSTS:
        handlers.append(urllib.request.ProxyHandler({}))  # this machine is never reached through a proxy
    return urllib.request.build_opener(*handlers)


def _retry_after(value: str | None, now: datetime) -> float | None:
    # Seconds, or an HTTP date.
    if not value:
        return None
    try:
        return max(float(value), 1.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 1.0)
