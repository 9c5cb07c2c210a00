"""The authorization matrix, cell by cell, through signed Slack requests.

Each cell builds the world afresh (tests/security/scenario.py), then the person playing the role takes
the action the way Slack would send it. An allowed cell must change what the action changes. A refused
cell tries every Slack path to the action (the button, the command, and a forged modal submission
carrying the record's id): every table must stay as it was, and each try must tell the person why (or
only open a form, whose submission is then refused on its own); never a 5xx, never an error in the logs.
The expected answers are workflows.authorization.MATRIX, the table the README shows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from slack_bolt.response import BoltResponse
from sqlmodel import select

from bot import ids
from bot.forms import metadata
from bot.ids import Action, ReviewVerb
from bot.views.access import deny_modal, request_modal, revoke_modal
from bot.views.classify import classify_view
from bot.views.forms import asset_form_view, problems_shown
from bot.views.reviews import retire_confirm_view
from tests.bot.conftest import Harness, block_action, outbox, submission
from tests.security.scenario import PEOPLE, Scenario, build_scenario, guarded_state, load
from workflows.authorization import MATRIX, Role, Verb, is_allowed, markdown_table
from workflows.db import transaction
from workflows.enums import AssetStatus, GrantStatus, RequestStatus
from workflows.models import AccessRequest, ApprovalStep, Asset, AssetReview, Grant, RecertItem

NEW_NAME = "Loan approval v2"
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def engine(sqlite_engine):
    """Who may act is decided the same way on every database, so the matrix runs on SQLite only; the
    fuzzing suite drives the same listeners on PostgreSQL too."""
    return sqlite_engine


# ---- sending, and hearing what the person was told ----------------------------------------------


@dataclass
class Attempt:
    """One try at an action: Bolt's answer, everything the person was told about it, and whether it
    only opened a form (whose submission is then checked on its own)."""

    response: BoltResponse
    notices: list[str] = field(default_factory=list)
    opened_form: bool = False


def attempt(h: Harness, user: str, send: Callable[[], BoltResponse]) -> Attempt:
    """Send one request as `user`, run any decision it queued as the worker would, and collect what
    reached them: response_url replies, ephemerals and DMs, modal field errors (in the ack, or under the
    fields of a form given back after its save), and queued refusals."""
    calls_before = len(h.fake.calls)
    outbox_before = max((row.id for row in outbox(h.ctx.engine)), default=0)
    response = send()
    h.run_decisions()
    notices, calls = [], h.fake.calls[calls_before:]
    for call in calls:
        if call.method in ("response_url", "chat.postEphemeral", "chat.postMessage"):
            notices.append(json.dumps(call.args, ensure_ascii=False))
        if call.method == "views.update" and problems_shown(call.args["view"]):  # a form given back
            notices.append(json.dumps(problems_shown(call.args["view"]), ensure_ascii=False))
    body = _json(response.body)
    if body.get("response_action") == "errors":
        notices.append(json.dumps(body["errors"], ensure_ascii=False))
    notices += [json.dumps(row.payload) for row in outbox(h.ctx.engine, template="decision_refused", user=user)
                if row.id > outbox_before]
    return Attempt(response=response, notices=notices,
                   opened_form=any(c.method in ("views.open", "views.push") for c in calls))


def _json(body: str) -> dict[str, Any]:
    try:
        data = json.loads(body or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def click(h: Harness, action_id: str, value: Any, user: str, *, selected: str | None = None) -> BoltResponse:
    """A button (or menu choice) clicked in a message, with a response_url to answer on."""
    return h.interact(block_action(action_id, str(value), user=user, selected=selected,
                                   response_url=h.fake.response_url("matrix")))


def submit(h: Harness, view: dict[str, Any], values: dict[str, Any], user: str) -> BoltResponse:
    """Submit a modal with these input values."""
    return h.interact(submission(view, values, user=user))


def opened_or(h: Harness, calls_before: int, forged: dict[str, Any]) -> dict[str, Any]:
    """The modal the last request opened, or (when it was refused) a forged copy of it."""
    opened = [c for c in h.fake.calls[calls_before:] if c.method in ("views.open", "views.push")]
    return opened[-1].args["view"] if opened else forged


# ---- each action, as Slack sends it ----------------------------------------------------------------


def _asset(h: Harness, s: Scenario) -> Asset:
    return load(h.ctx.engine, Asset, s.asset_id)


def _via_modal(open_it: Callable[[Harness, Scenario, str], BoltResponse],
               forged: Callable[[Harness, Scenario], dict[str, Any]], values: dict[str, Any]):
    """An action that opens a modal and is done by submitting it: open it, then submit what opened (or,
    when opening was refused, a forged modal carrying the record's id, as an attacker would)."""
    def run(h: Harness, s: Scenario, user: str, allowed: bool) -> list[Attempt]:
        before = len(h.fake.calls)
        first = attempt(h, user, lambda: open_it(h, s, user))
        view = opened_or(h, before, forged(h, s))
        return [first, attempt(h, user, lambda: submit(h, view, values, user))]
    return run


def _clicks(*buttons: Callable[[Harness, Scenario, str], BoltResponse]):
    """An action done by one click (the first button); a refused person tries each of its buttons."""
    def run(h: Harness, s: Scenario, user: str, allowed: bool) -> list[Attempt]:
        return [attempt(h, user, lambda b=b: b(h, s, user)) for b in (buttons[:1] if allowed else buttons)]
    return run


def _review(verb: ReviewVerb) -> Callable[[Harness, Scenario, str], BoltResponse]:
    return lambda h, s, u: click(h, Action.REVIEW_MENU, "", u, selected=f"{verb.value}:{s.asset_id}")


def _edit_form(h: Harness, s: Scenario) -> dict[str, Any]:
    asset = _asset(h, s)
    return asset_form_view(kind=asset.kind, asset=asset, owner_id=asset.owner_id,
                           metadata=metadata(kind=asset.kind.value, asset_id=asset.id))


def _request_form(h: Harness, s: Scenario) -> dict[str, Any]:
    return request_modal(asset=_asset(h, s), durations_days=[1, 7], approval_steps=["step_one", "step_two"],
                         metadata=metadata(asset_id=s.asset_id))


def _revoke_form(h: Harness, s: Scenario) -> dict[str, Any]:
    return revoke_modal(grant=load(h.ctx.engine, Grant, s.grant_id), asset=_asset(h, s),
                        metadata=metadata(grant_id=s.grant_id))


def _retire_from_review(h: Harness, s: Scenario, user: str) -> BoltResponse:
    view = retire_confirm_view(asset=_asset(h, s), active_grants=1, metadata=metadata(asset_id=s.asset_id))
    return submit(h, view, {}, user)


def _retire(h: Harness, s: Scenario, user: str, allowed: bool) -> list[Attempt]:
    """Retire from the card; a refused person also tries Retire from a review, and its confirmation."""
    paths = [lambda: click(h, Action.RETIRE_ASSET, s.asset_id, user)]
    if not allowed:
        paths += [lambda: _review(ReviewVerb.RETIRE)(h, s, user), lambda: _retire_from_review(h, s, user)]
    return [attempt(h, user, path) for path in paths]


def _edit(h: Harness, s: Scenario, user: str, allowed: bool) -> list[Attempt]:
    """`/steward edit`, then the form; a refused person also tries Edit on the card and Update on a review."""
    tries = _via_modal(lambda h, s, u: h.command(f"edit {s.slug}", user=u), _edit_form,
                       {"name": NEW_NAME})(h, s, user, allowed)
    if not allowed:
        tries += [attempt(h, user, lambda: click(h, Action.EDIT_ASSET, s.asset_id, user)),
                  attempt(h, user, lambda: _review(ReviewVerb.UPDATE)(h, s, user))]
    return tries


DRIVERS: dict[Verb, Callable[[Harness, Scenario, str, bool], list[Attempt]]] = {
    Verb.EDIT: _edit,
    Verb.RETIRE: _retire,
    Verb.CLASSIFY: _via_modal(
        lambda h, s, u: h.command(f"classify {s.slug}", user=u),
        lambda h, s: classify_view(asset=_asset(h, s), metadata=metadata(asset_id=s.asset_id)),
        {"annex_i_safety_component": "no"}),
    Verb.REQUEST: _via_modal(
        lambda h, s, u: h.command(f"request {s.slug}", user=u), _request_form,
        {"level": "admin", "justification": "Audit of the scoring rules"}),
    Verb.APPROVE: _clicks(lambda h, s, u: click(h, Action.APPROVE, s.request_id, u)),
    Verb.DENY: _via_modal(
        lambda h, s, u: click(h, Action.DENY_OPEN, s.request_id, u),
        lambda h, s: deny_modal(request_id=s.request_id, metadata=metadata(request_id=s.request_id)),
        {"reason": "Not needed for this project"}),
    Verb.REVOKE: _via_modal(lambda h, s, u: click(h, Action.REVOKE_OPEN, s.grant_id, u), _revoke_form,
                            {"reason": "Moved to another team"}),
    Verb.EXTEND: _clicks(lambda h, s, u: click(h, Action.EXTEND_GRANT, s.grant_id, u)),
    Verb.CANCEL: _clicks(lambda h, s, u: click(h, Action.CANCEL_REQUEST, s.request_id, u)),
    Verb.REVIEW: _clicks(_review(ReviewVerb.ACCURATE)),
    Verb.SNOOZE: _clicks(_review(ReviewVerb.SNOOZE)),
    Verb.RECERTIFY: _clicks(lambda h, s, u: click(h, Action.RECERT_KEEP, s.item_id, u),
                            lambda h, s, u: click(h, Action.RECERT_REVOKE, s.item_id, u),
                            lambda h, s, u: click(h, Action.RECERT_KEEP_ALL, s.campaign_id, u)),
    Verb.TAKE_OWNERSHIP: _clicks(lambda h, s, u: click(h, Action.TAKE_OWNERSHIP, s.orphan_id, u)),
    Verb.REPORT: _clicks(lambda h, s, u: h.command("report", user=u),
                         lambda h, s, u: click(h, Action.REPORT_HTML, "html", u)),
    Verb.EXPORT: _clicks(lambda h, s, u: h.command("export inventory --format csv", user=u),
                         lambda h, s, u: h.command("export decisions", user=u)),
}


# ---- what an allowed action must have done -------------------------------------------------------


def _step_one(h: Harness, s: Scenario) -> ApprovalStep:
    with transaction(h.ctx.engine) as session:
        return session.exec(select(ApprovalStep).where(ApprovalStep.request_id == s.request_id,
                                                       ApprovalStep.position == 0)).one()


def _requests(h: Harness, **where: Any) -> list[AccessRequest]:
    with transaction(h.ctx.engine) as session:
        query = select(AccessRequest)
        for name, value in where.items():
            query = query.where(getattr(AccessRequest, name) == value)
        return list(session.exec(query).all())


DONE: dict[Verb, Callable[[Harness, Scenario, str, list[Attempt]], bool]] = {
    Verb.EDIT: lambda h, s, u, _: _asset(h, s).name == NEW_NAME,
    Verb.RETIRE: lambda h, s, u, _: _asset(h, s).status == AssetStatus.RETIRED,
    Verb.CLASSIFY: lambda h, s, u, _: _asset(h, s).risk_tier is not None,
    Verb.REQUEST: lambda h, s, u, _: len(_requests(h, requester_id=u, level="admin")) == 1,
    Verb.APPROVE: lambda h, s, u, _: (_step_one(h, s).approved_by == u
                                      and load(h.ctx.engine, AccessRequest, s.request_id).status
                                      == RequestStatus.APPROVED),
    Verb.DENY: lambda h, s, u, _: load(h.ctx.engine, AccessRequest, s.request_id).resolved_by == u
    and load(h.ctx.engine, AccessRequest, s.request_id).status == RequestStatus.DENIED,
    Verb.REVOKE: lambda h, s, u, _: load(h.ctx.engine, Grant, s.grant_id).status == GrantStatus.REVOKED
    and load(h.ctx.engine, Grant, s.grant_id).ended_by == u,
    Verb.EXTEND: lambda h, s, u, _: len(_requests(h, requester_id=u, renews_grant_id=s.grant_id)) == 1,
    Verb.CANCEL: lambda h, s, u, _: load(h.ctx.engine, AccessRequest, s.request_id).status == RequestStatus.CANCELLED,
    Verb.REVIEW: lambda h, s, u, _: _asset(h, s).last_reviewed_at is not None,
    Verb.SNOOZE: lambda h, s, u, _: load(h.ctx.engine, AssetReview, s.asset_id).snoozes == 1,
    Verb.RECERTIFY: lambda h, s, u, _: load(h.ctx.engine, RecertItem, s.item_id).decided_by == u,
    Verb.TAKE_OWNERSHIP: lambda h, s, u, _: _asset(h, s).owner_id == u,
    Verb.REPORT: lambda h, s, u, tries: "Governance report" in " ".join(tries[0].notices),
}


CELLS = [(rule.verb, role) for rule in MATRIX for role in Role]


@pytest.mark.parametrize(("verb", "role"), CELLS, ids=[f"{v.value}-{r.value}".replace(" ", "_") for v, r in CELLS])
def test_every_cell_of_the_matrix_holds(harness, now, caplog, figures, verb, role):
    caplog.set_level(logging.ERROR)
    scenario = build_scenario(harness.ctx.engine, policy=harness.ctx.policy, now=now,
                              orphaned=verb == Verb.TAKE_OWNERSHIP)
    user, allowed = PEOPLE[role], is_allowed(verb, role)
    before = guarded_state(harness.ctx.engine)

    tries = DRIVERS[verb](harness, scenario, user, allowed)

    assert all(t.response.status < 500 for t in tries), [t.response.status for t in tries]
    if allowed:
        assert DONE[verb](harness, scenario, user, tries), f"{role.value} could not {verb.value}"
    else:
        assert guarded_state(harness.ctx.engine) == before, f"{role.value} changed something by {verb.value}"
        silent = [n for n, t in enumerate(tries) if not t.notices and not t.opened_form]
        assert not silent, f"{role.value} was refused {verb.value} without being told (attempts {silent})"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    figures["cells"] += 1
    figures["cells_allowed" if allowed else "cells_refused"] += 1
    figures["signed_requests"] += len(tries)


def test_export_has_no_slack_path_at_all():
    # Exports are for whoever can read the database; no command, button or modal of the app starts one.
    slack_ids = [member.value for enum in (ids.Command, ids.Callback, ids.Action) for member in enum]
    assert not [value for value in slack_ids if "export" in value]
    assert not is_allowed(Verb.EXPORT, Role.ADMIN)


def test_the_readme_security_section_shows_exactly_this_table():
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Security\n")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end != -1 else len(text)]
    table = [line for line in section.splitlines() if line.startswith("|")]
    assert "\n".join(table) + "\n" == markdown_table(), "run `python -m workflows.authorization` and paste it"
