"""Provisioning rules without a database: the job state machine, the backoff, and the webhook signature."""

from __future__ import annotations

import hashlib
import hmac
import itertools
from datetime import timedelta

import pytest

from workflows.access import IllegalTransition
from workflows.enums import ProvisioningStatus as J
from workflows.provisioning import (
    JOB_TRANSITIONS,
    MAX_ATTEMPTS,
    backoff,
    check_job_transition,
    event_body,
    sign,
    verify,
)

ALLOWED_JOB_MOVES = {(J.PENDING, J.SUCCEEDED), (J.PENDING, J.FAILED), (J.PENDING, J.CANCELLED),
                     (J.FAILED, J.SUCCEEDED), (J.FAILED, J.CANCELLED)}


def test_the_job_table_names_every_state_and_only_the_allowed_moves():
    assert set(JOB_TRANSITIONS) == set(J)
    assert {(a, b) for a, targets in JOB_TRANSITIONS.items() for b in targets} == ALLOWED_JOB_MOVES


@pytest.mark.parametrize(("current", "target"), sorted(itertools.product(J, J)), ids=lambda s: s.value)
def test_every_job_move(current, target):
    if (current, target) in ALLOWED_JOB_MOVES:
        check_job_transition(current, target)
    else:
        with pytest.raises(IllegalTransition) as excinfo:
            check_job_transition(current, target)
        assert current.value in str(excinfo.value) and target.value in str(excinfo.value)


@pytest.mark.parametrize(
    ("attempts", "retry_after", "wait"),
    [
        (1, None, timedelta(minutes=1)),
        (2, None, timedelta(minutes=2)),
        (3, None, timedelta(minutes=4)),
        (6, None, timedelta(minutes=32)),
        (7, None, timedelta(hours=1)),       # capped
        (40, None, timedelta(hours=1)),
        (1, 300, timedelta(minutes=5)),      # Retry-After asks for longer: honoured
        (3, 30, timedelta(minutes=4)),       # ...but never shorter than the backoff
        (7, 7200, timedelta(hours=2)),       # longer than the cap, as asked
        (1, 10**9, timedelta(hours=24)),     # within reason
        (1, 0, timedelta(minutes=1)),
    ],
)
def test_backoff(attempts, retry_after, wait):
    assert backoff(attempts, retry_after=retry_after) == wait


def test_eight_attempts_take_about_two_hours():
    assert MAX_ATTEMPTS == 8
    assert sum((backoff(n) for n in range(1, MAX_ATTEMPTS)), timedelta()) == timedelta(minutes=123)


def test_the_signature_is_an_hmac_of_version_timestamp_and_body():
    body = event_body({"event": "grant", "grant_id": 7, "asset": {"slug": "fraud-scorer", "kind": "model"}})
    assert body == b'{"asset":{"kind":"model","slug":"fraud-scorer"},"event":"grant","grant_id":7}'
    expected = hmac.new(b"s3cret", b"v1:1767225600:" + body, hashlib.sha256).hexdigest()
    assert sign(secret="s3cret", timestamp="1767225600", body=body) == f"v1={expected}"
    assert verify(secret="s3cret", timestamp="1767225600", body=body, signature=f"v1={expected}")
    assert not verify(secret="other", timestamp="1767225600", body=body, signature=f"v1={expected}")
    assert not verify(secret="s3cret", timestamp="1767225601", body=body, signature=f"v1={expected}")
    assert not verify(secret="s3cret", timestamp="1767225600", body=body + b" ", signature=f"v1={expected}")


def test_the_body_is_utf8_json_that_keeps_names_as_they_are():
    assert event_body({"grantee": "U1", "asset": {"slug": "données"}}).decode("utf-8") == \
        '{"asset":{"slug":"données"},"grantee":"U1"}'
