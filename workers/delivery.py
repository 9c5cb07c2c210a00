"""Slack delivery of outbox rows: claim a row, render it, send it once, and record Slack's answer.

A row is claimed with a compare-and-set that pushes its `next_attempt_at` a few minutes ahead,
committed before Slack is called, so two workers (or a task and the sweep) never send the same
row twice, and no database lock is held across the HTTP call. If a worker dies mid-send, the
claim lapses and the sweep finds the row due again. The claim also clears the sweep's `queued_at`
mark: the row's task has reached a worker, so once it is due again the next sweep may queue it.
Failures are classified here, never retried in place: a transient error (429, 5xx, no connection)
backs off, honouring Retry-After, and is retried for as long as it takes; a permanent one (a bad
channel, a revoked token) backs off for an hour and gives up once the row has had MAX_ATTEMPTS
attempts, keeping the error on the row.

A send cut off after it may have reached Slack (a timeout, a dropped connection, or a worker killed
mid-send, whose row is still marked IN_FLIGHT when it is claimed again) is ambiguous: Slack has no
idempotency key, so every post carries its outbox id in its message metadata, and an ambiguous row
is looked up in the channel's recent history before it is posted again. (An ephemeral message has
no history to look in: it is sent at least once.)

An "update" row redraws the Slack message an earlier row was sent as, with chat.update at that
row's stored channel and ts, rendering the earlier row's payload: renderers draw from current
state, so any update shows the latest. It waits while the original is unsent, gives up with it,
and, once sent, marks the other due updates of the same message sent too (they would redraw
the same state again).
"""

from __future__ import annotations

import http.client
import logging
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import Engine, update
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, col, select

from workers.celery_app import Renderer, WorkerContext
from workflows.anchors import record_receipt
from workflows.reviews import record_nudge_receipt
from workflows.db import DatabaseUnavailable, transaction
from workflows.models import OutboxMessage
from workflows.outbox import OutboxMethod, mark_failed, mark_sent

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 10
# The default claim (Settings.outbox_claim_seconds): longer than one send can take (the client's
# timeout is 15 s), so a claim only lapses when its worker has died.
CLAIM_TTL = timedelta(minutes=5)
PERMANENT_BACKOFF = timedelta(hours=1)
# The last_error of a row being sent: seen again at the next claim, it says the sender died mid-send.
IN_FLIGHT = "in_flight"
# A send that failed this way may have reached Slack before the connection gave out.
AMBIGUOUS_PREFIX = "connection_error"
METADATA_EVENT = "steward_outbox"
# How far back an ambiguous row is looked for: the channel's latest messages (Slack's page size).
HISTORY_LIMIT = 200
# DM channel ids by client and user (a client's entry goes with it).
_dm_channels: weakref.WeakKeyDictionary[WebClient, dict[str, str]] = weakref.WeakKeyDictionary()
# How long an update waits for its original to be sent before looking again (at the least).
UPDATE_WAIT = timedelta(seconds=30)
# Messages an update can redraw: an ephemeral has no ts, and an update row holds no message of its own.
UPDATABLE = frozenset({OutboxMethod.POST, OutboxMethod.DM})

AUTH_ERRORS = frozenset({"invalid_auth", "account_inactive", "token_revoked", "token_expired", "not_authed"})
TRANSIENT_ERRORS = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})
# Slack cannot show an ephemeral message here, so the user gets it as a DM instead.
EPHEMERAL_FALLBACK_ERRORS = frozenset({"channel_not_found", "not_in_channel", "is_archived",
                                       "user_not_in_channel"})


class Outcome(StrEnum):
    """What one `deliver` call did."""

    SENT = "sent"
    ALREADY_SENT = "already_sent"
    NOT_DUE = "not_due"            # backing off, given up, or being sent by another worker
    MISSING = "missing"
    RETRYING = "retrying"          # a transient failure; retried after a backoff
    RATE_LIMITED = "rate_limited"  # Slack said 429; retried after Retry-After
    FAILED = "failed"              # a permanent error; retried slowly until MAX_ATTEMPTS
    GAVE_UP = "gave_up"            # no more retries: MAX_ATTEMPTS permanent failures, or a hopeless update
    WAITING = "waiting"            # an update whose original is not sent yet; looked at again shortly


class _Kind(StrEnum):
    TRANSIENT = "transient"
    RATE_LIMITED = "rate_limited"
    AUTH = "auth"
    PERMANENT = "permanent"
    HOPELESS = "hopeless"  # can never succeed however often it is tried: give up at once


@dataclass(frozen=True)
class _Claimed:
    id: int
    method: str
    channel: str
    user: str
    payload: dict[str, Any]
    updates_id: int | None
    claimed_at: datetime
    ambiguous: bool = False  # an earlier attempt may have reached Slack: look before posting again


@dataclass(frozen=True)
class _Target:
    """The Slack message an update redraws, the payload it is drawn from, and updates it makes redundant."""

    channel: str
    ts: str
    payload: dict[str, Any]
    supersedes: tuple[int, ...]


@dataclass(frozen=True)
class _Sent:
    channel: str
    ts: str
    supersedes: tuple[int, ...] = ()
    as_of: datetime | None = None


@dataclass(frozen=True)
class _Wait:
    until: datetime
    reason: str


@dataclass(frozen=True)
class _Failure:
    kind: _Kind
    error: str
    retry_after: float | None = None


def default_renderer() -> Renderer:
    """bot.views.messages.render_outbox, imported only when a message is rendered."""
    from bot.views.messages import render_outbox  # noqa: PLC0415 - keep bot out of import time

    return render_outbox


def deliver(*, context: WorkerContext, message_id: int, renderer: Renderer | None = None) -> Outcome:
    """Send outbox row `message_id` unless it is sent, not due, or being sent by someone else."""
    # Resolve the renderer first: if it cannot be imported, no row should be claimed.
    render = renderer or context.renderer or default_renderer()
    claimed = _claim(context.engine, message_id, now=context.now(),
                     ttl=timedelta(seconds=context.settings.outbox_claim_seconds))
    if isinstance(claimed, Outcome):
        return claimed
    result = _attempt(context, claimed, render)
    if isinstance(result, _Sent):
        return _record_sent(context.engine, message_id, result, now=context.now())
    if isinstance(result, _Wait):
        return _record_wait(context.engine, message_id, result)
    return _record_failure(context.engine, message_id, result, now=context.now())


def _claim(engine: Engine, message_id: int, *, now: datetime, ttl: timedelta) -> _Claimed | Outcome:
    with transaction(engine) as session:
        # What the last attempt left (read before the claim overwrites it): a row that was in flight, or
        # cut off, may be in Slack already.
        previous = session.exec(select(OutboxMessage.last_error).where(OutboxMessage.id == message_id)).first()
        won = session.exec(
            update(OutboxMessage)
            .where(OutboxMessage.id == message_id, OutboxMessage.sent_at.is_(None),
                   OutboxMessage.next_attempt_at <= now)
            .values(next_attempt_at=now + ttl, last_error=IN_FLIGHT, queued_at=None)
            .execution_options(synchronize_session=False)
        ).rowcount == 1
        row = session.get(OutboxMessage, message_id)
        if row is None:
            return Outcome.MISSING
        if not won:
            return Outcome.ALREADY_SENT if row.sent_at is not None else Outcome.NOT_DUE
        ambiguous = bool(previous) and (previous == IN_FLIGHT or previous.startswith(AMBIGUOUS_PREFIX))
        return _Claimed(row.id, row.method, row.channel, row.user, dict(row.payload), row.updates_id, now,
                        ambiguous=ambiguous)


def _attempt(context: WorkerContext, claimed: _Claimed, render: Renderer) -> _Sent | _Failure | _Wait:
    try:
        method = OutboxMethod(claimed.method)
    except ValueError:
        return _Failure(_Kind.PERMANENT, f"unsupported_method: {claimed.method}")
    target = None
    payload = claimed.payload
    if method is OutboxMethod.UPDATE:
        target = _update_target(context.engine, claimed)
        if not isinstance(target, _Target):
            return target
        payload = target.payload  # the original's: the redraw shows what it shows, as things stand now
    content = _render(context.engine, claimed, payload, render)
    if isinstance(content, _Failure):
        return content
    try:
        if target is not None:
            return _update(context.client, target, content, as_of=claimed.claimed_at)
        return _send(context.client, method, claimed, content)
    except SlackApiError as exc:
        return _classify_api_error(exc)
    except (OSError, http.client.HTTPException) as exc:
        # URLError, timeouts and dropped connections: Slack may be fine in a minute.
        return _Failure(_Kind.TRANSIENT, f"connection_error: {type(exc).__name__}")


def _update_target(engine: Engine, claimed: _Claimed) -> _Target | _Wait | _Failure:
    if claimed.updates_id is None:
        return _Failure(_Kind.HOPELESS, "update_without_target")
    with transaction(engine) as session:
        original = session.get(OutboxMessage, claimed.updates_id)
        if original is None:
            return _Failure(_Kind.HOPELESS, f"update_target_missing: {claimed.updates_id}")
        if original.method not in UPDATABLE:
            return _Failure(_Kind.HOPELESS, f"update_target_not_updatable: {original.method} {original.id}")
        if original.sent_at is None:
            if original.next_attempt_at is None:
                return _Failure(_Kind.HOPELESS, f"update_target_gave_up: {original.id}")
            # No sooner than the original's own next attempt: the update cannot succeed before it.
            # (An original being sent right now shows its claim's expiry: minutes at most.)
            until = max(claimed.claimed_at + UPDATE_WAIT, original.next_attempt_at)
            return _Wait(until=until, reason=f"waiting_for_original: {original.id}")
        if not (original.sent_channel and original.sent_ts):
            return _Failure(_Kind.HOPELESS, f"update_target_has_no_ts: {original.id}")
        # Other updates of this message that were committed, and due, before our claim: their changes
        # are committed, so the render below (a later transaction) draws them too. Claimed or
        # backing-off rows are left alone, so no other worker's send is marked behind its back.
        # The next_attempt_at condition is the indexed one, so this reads only due rows.
        siblings = session.exec(select(OutboxMessage.id).where(
            OutboxMessage.next_attempt_at <= claimed.claimed_at, col(OutboxMessage.sent_at).is_(None),
            OutboxMessage.method == OutboxMethod.UPDATE, OutboxMessage.updates_id == original.id,
            OutboxMessage.id != claimed.id)).all()
        return _Target(original.sent_channel, original.sent_ts, dict(original.payload), tuple(siblings))


def _render(engine: Engine, claimed: _Claimed, payload: dict[str, Any],
            render: Renderer) -> dict[str, Any] | _Failure:
    try:
        with transaction(engine) as session:
            content = render(session, payload)
    except (DBAPIError, DatabaseUnavailable):
        raise  # the database is at fault, not the message: the claim lapses and the sweep retries
    except Exception as exc:  # noqa: BLE001 - one unrenderable row must not stop the others
        logger.exception("Could not render outbox message %s", claimed.id)
        return _Failure(_Kind.PERMANENT, f"render_error: {type(exc).__name__}")
    return {key: value for key, value in content.items() if value is not None}


def _send(client: WebClient, method: OutboxMethod, claimed: _Claimed, content: dict[str, Any]) -> _Sent:
    if method is OutboxMethod.POST:
        return _post(client, claimed.channel, content, claimed)
    if method is OutboxMethod.DM:
        return _post(client, _open_dm(client, claimed.user), content, claimed)
    return _post_ephemeral(client, claimed, content)


def _update(client: WebClient, target: _Target, content: dict[str, Any], *, as_of: datetime) -> _Sent:
    client.chat_update(channel=target.channel, ts=target.ts, **content)
    return _Sent(channel=target.channel, ts=target.ts, supersedes=target.supersedes, as_of=as_of)


def _post(client: WebClient, channel: str, content: dict[str, Any], claimed: _Claimed) -> _Sent:
    if claimed.ambiguous:
        ts = _already_posted(client, channel, claimed.id)
        if ts:
            logger.info("Outbox message %s had reached Slack before its send was cut off", claimed.id)
            return _Sent(channel=channel, ts=ts)
    metadata = {"event_type": METADATA_EVENT, "event_payload": {"outbox_id": claimed.id}}
    response = client.chat_postMessage(channel=channel, metadata=metadata, **content)
    return _Sent(channel=response.get("channel") or channel, ts=response["ts"])


def _already_posted(client: WebClient, channel: str, message_id: int) -> str | None:
    """The ts of the message outbox row `message_id` was posted as, if an earlier attempt got through."""
    try:
        history = client.conversations_history(channel=channel, limit=HISTORY_LIMIT, include_all_metadata=True)
    except SlackApiError as exc:
        # Without the history scopes (or access to the channel) it cannot be checked: send at least once.
        logger.warning("Could not look for outbox message %s in %s (%s); sending it again", message_id, channel,
                       _error_code(exc))
        return None
    for message in history.get("messages") or []:
        metadata = message.get("metadata") or {}
        if metadata.get("event_type") == METADATA_EVENT and \
                (metadata.get("event_payload") or {}).get("outbox_id") == message_id:
            return message.get("ts")
    return None


def _open_dm(client: WebClient, user: str) -> str:
    # The bot's DM with a person never changes: one conversations.open per person per client, not per
    # message (half the calls a DM costs, and half the chances to meet a failing Slack).
    known = _dm_channels.setdefault(client, {})
    if user not in known:
        known[user] = client.conversations_open(users=user)["channel"]["id"]
    return known[user]


def _post_ephemeral(client: WebClient, claimed: _Claimed, content: dict[str, Any]) -> _Sent:
    if claimed.channel:
        try:
            response = client.chat_postEphemeral(channel=claimed.channel, user=claimed.user, **content)
            return _Sent(channel=claimed.channel, ts=response.get("message_ts") or "")
        except SlackApiError as exc:
            if _error_code(exc) not in EPHEMERAL_FALLBACK_ERRORS:
                raise
            logger.info("Ephemeral outbox message %s fell back to a DM (%s)", claimed.id, _error_code(exc))
    return _post(client, _open_dm(client, claimed.user), content, claimed)


def _classify_api_error(exc: SlackApiError) -> _Failure:
    status, code = exc.response.status_code, _error_code(exc)
    if status == 429 or code == "ratelimited":
        return _Failure(_Kind.RATE_LIMITED, "ratelimited", retry_after=_retry_after(exc))
    if status >= 500:
        return _Failure(_Kind.TRANSIENT, f"http_{status}")
    if code in AUTH_ERRORS:
        return _Failure(_Kind.AUTH, code)
    if code in TRANSIENT_ERRORS:
        return _Failure(_Kind.TRANSIENT, code)
    return _Failure(_Kind.PERMANENT, code or f"http_{status}")


def _error_code(exc: SlackApiError) -> str:
    data = exc.response.data
    return str(data.get("error") or "") if isinstance(data, dict) else ""


def _retry_after(exc: SlackApiError) -> float | None:
    headers = exc.response.headers or {}
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        return max(float(value), 1.0) if value is not None else None
    except ValueError:
        return None


def _record_sent(engine: Engine, message_id: int, sent: _Sent, *, now: datetime) -> Outcome:
    with transaction(engine) as session:
        row = session.get(OutboxMessage, message_id)
        if row is None:
            return Outcome.MISSING
        if row.sent_at is not None:
            # Only possible if our claim lapsed mid-send and another worker sent it too.
            logger.warning("Outbox message %s was sent twice (a claim lapsed)", message_id)
            return Outcome.ALREADY_SENT
        mark_sent(session=session, message=row, channel=sent.channel, ts=sent.ts, now=now)
        if row.last_error == IN_FLIGHT:
            row.last_error = ""  # it landed: nothing went wrong with this attempt
        # An audit anchor keeps Slack's answer too: the message that witnesses it (a no-op for others).
        record_receipt(session=session, message=row)
        # A review nudge counts as sent only now that Slack accepted it (a no-op for other messages).
        record_nudge_receipt(session=session, message=row)
        if sent.supersedes:
            _supersede(session, sent, by=message_id, now=now)
    return Outcome.SENT


def _supersede(session: Session, sent: _Sent, *, by: int, now: datetime) -> None:
    # The same conditions as when they were picked: a row claimed since (its next attempt moved
    # past `as_of`) is being sent by someone else and keeps its own outcome.
    superseded = session.exec(
        update(OutboxMessage)
        .where(col(OutboxMessage.id).in_(sent.supersedes), col(OutboxMessage.sent_at).is_(None),
               OutboxMessage.next_attempt_at <= sent.as_of)
        .values(sent_at=now, next_attempt_at=None, sent_channel=sent.channel, sent_ts=sent.ts,
                last_error=f"superseded by outbox message {by}")
        .execution_options(synchronize_session=False)
    ).rowcount
    logger.debug("Outbox update %s superseded %s older update(s) of the same message", by, superseded)


def _record_wait(engine: Engine, message_id: int, wait: _Wait) -> Outcome:
    # Not an attempt: nothing was sent, so the row's attempts (and MAX_ATTEMPTS) are untouched.
    with transaction(engine) as session:
        row = session.get(OutboxMessage, message_id)
        if row is None or row.sent_at is not None:
            return Outcome.MISSING if row is None else Outcome.ALREADY_SENT
        row.next_attempt_at, row.last_error = wait.until, wait.reason
        session.add(row)
    return Outcome.WAITING


def _record_failure(engine: Engine, message_id: int, failure: _Failure, *, now: datetime) -> Outcome:
    _log_failure(message_id, failure)
    with transaction(engine) as session:
        row = session.get(OutboxMessage, message_id)
        if row is None or row.sent_at is not None:
            return Outcome.MISSING if row is None else Outcome.ALREADY_SENT
        if failure.kind is _Kind.HOPELESS:
            mark_failed(session=session, message=row, error=failure.error, now=now)
            row.next_attempt_at = None
            return Outcome.GAVE_UP
        if failure.kind in (_Kind.TRANSIENT, _Kind.RATE_LIMITED):
            mark_failed(session=session, message=row, error=failure.error, now=now,
                        retry_after=failure.retry_after)
            return Outcome.RATE_LIMITED if failure.kind is _Kind.RATE_LIMITED else Outcome.RETRYING
        mark_failed(session=session, message=row, error=failure.error, now=now,
                    retry_after=PERMANENT_BACKOFF.total_seconds())
        if row.attempts >= MAX_ATTEMPTS:
            # Stop retrying, but keep the row and its error for whoever looks into it.
            row.next_attempt_at = None
            return Outcome.GAVE_UP
    return Outcome.FAILED


def _log_failure(message_id: int, failure: _Failure) -> None:
    # Only the error name is logged: Slack's full answer and the client are never formatted in.
    if failure.kind is _Kind.AUTH:
        logger.error("Slack refused the bot token (%s) delivering outbox message %s; check SLACK_BOT_TOKEN",
                     failure.error, message_id)
    elif failure.kind in (_Kind.PERMANENT, _Kind.HOPELESS):
        logger.warning("Outbox message %s failed: %s", message_id, failure.error)
    else:
        logger.info("Outbox message %s will be retried: %s", message_id, failure.error)
