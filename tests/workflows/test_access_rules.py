"""Access rules without a database: the two state machines, request input and approver routing."""

from __future__ import annotations

import itertools

import pytest
from pydantic import ValidationError

from tests.factories import GOV1, GOV2, OWNER, REQUESTER, members, policy_with
from workflows.access import (
    GRANT_TRANSITIONS,
    REQUEST_TRANSITIONS,
    IllegalTransition,
    RequestInput,
    StepPlan,
    check_grant_transition,
    check_request_transition,
    plan_steps,
)
from workflows.enums import GrantStatus as G
from workflows.enums import RequestStatus as R
from workflows.enums import RiskTier
from workflows.errors import Conflict, InvalidInput

# ---- state machines ------------------------------------------------------------------------------

ALLOWED_REQUEST_MOVES = {(R.PENDING, R.APPROVED), (R.PENDING, R.DENIED), (R.PENDING, R.CANCELLED),
                         (R.PENDING, R.EXPIRED)}
ALLOWED_GRANT_MOVES = {(G.PROVISIONING, G.ACTIVE), (G.PROVISIONING, G.REVOKED), (G.ACTIVE, G.EXPIRED),
                       (G.ACTIVE, G.REVOKED)}


def test_the_request_table_names_every_state_and_only_the_allowed_moves():
    assert set(REQUEST_TRANSITIONS) == set(R)
    assert {(a, b) for a, targets in REQUEST_TRANSITIONS.items() for b in targets} == ALLOWED_REQUEST_MOVES


def test_the_grant_table_names_every_state_and_only_the_allowed_moves():
    assert set(GRANT_TRANSITIONS) == set(G)
    assert {(a, b) for a, targets in GRANT_TRANSITIONS.items() for b in targets} == ALLOWED_GRANT_MOVES


@pytest.mark.parametrize(("current", "target"), sorted(itertools.product(R, R)), ids=lambda s: s.value)
def test_every_request_move(current, target):
    if (current, target) in ALLOWED_REQUEST_MOVES:
        check_request_transition(current, target)  # no error
    else:
        with pytest.raises(IllegalTransition) as excinfo:
            check_request_transition(current, target)
        assert current.value in str(excinfo.value) and target.value in str(excinfo.value)


@pytest.mark.parametrize(("current", "target"), sorted(itertools.product(G, G)), ids=lambda s: s.value)
def test_every_grant_move(current, target):
    if (current, target) in ALLOWED_GRANT_MOVES:
        check_grant_transition(current, target)
    else:
        with pytest.raises(IllegalTransition) as excinfo:
            check_grant_transition(current, target)
        assert current.value in str(excinfo.value) and target.value in str(excinfo.value)


def test_an_illegal_transition_is_a_conflict_the_edges_already_handle():
    assert issubclass(IllegalTransition, Conflict)


# ---- request input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"justification": ""}, "justification"),
        ({"justification": "   "}, "justification"),
        ({"justification": "j" * 1001}, "justification"),
        ({"duration_hours": 0}, "duration_hours"),
        ({"duration_hours": -4}, "duration_hours"),
        ({"level": "owner"}, "level"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_request_input_is_refused(fields, bad):
    raw = {"level": "read", "duration_hours": 24, "justification": "Monthly churn analysis", **fields}
    with pytest.raises(ValidationError) as excinfo:
        RequestInput.model_validate(raw)
    assert [e["loc"][0] for e in excinfo.value.errors()] == [bad]


def test_request_input_is_trimmed_and_takes_1000_characters():
    data = RequestInput.model_validate({"level": "use", "duration_hours": 1, "justification": f" {'j' * 1000} "})
    assert data.justification == "j" * 1000 and data.emergency is False


# ---- routing (plan_steps) ------------------------------------------------------------------------

U1, U2, U3 = "U0PERSON1", "U0PERSON2", "U0PERSON3"
GROUP_TABLE = {"governance": {GOV1, GOV2}, "reviewers": {U1, U2}, "solo": {U1}, "empty": set(),
               "requester-only": {REQUESTER}}
ONLY_APPROVER = "you are its only approver"
SPOKEN_FOR = "its approvers already approve another step"
NO_MEMBERS = "nobody is in it"


def _policy(base, steps, *, fallback="governance"):
    return policy_with(base, approvers={"minimal": steps}, groups=["reviewers", "solo", "empty", "requester-only"],
                       fallback_group=fallback)


def _plan(base, steps, *, owner=OWNER, data_owners=(), requester=REQUESTER, groups=None, fallback="governance",
          tier=RiskTier.MINIMAL):
    return plan_steps(policy=_policy(base, steps, fallback=fallback), tier=tier, owner_id=owner,
                      data_owners=frozenset(data_owners), requester_id=requester,
                      members_of=members(GROUP_TABLE if groups is None else groups))


# (id, steps, owner, data owners, requester, expected [(group, approvers, reason fragment)])
ROUTES = [
    ("owner only", ["owner"], OWNER, (), REQUESTER,
     [("owner", {OWNER}, "")]),
    ("owner and a group", ["owner", "governance"], OWNER, (), REQUESTER,
     [("owner", {OWNER}, ""), ("governance", {GOV1, GOV2}, "")]),
    ("data owners skipped when there are none", ["owner", "data_owners"], OWNER, (), REQUESTER,
     [("owner", {OWNER}, "")]),
    ("data owners asked when there are some", ["owner", "data_owners"], OWNER, (U1, U2), REQUESTER,
     [("owner", {OWNER}, ""), ("data_owners", {U1, U2}, "")]),
    ("requester removed from a group step", ["owner", "reviewers"], OWNER, (), U1,
     [("owner", {OWNER}, ""), ("reviewers", {U2}, "")]),
    ("requester removed from every step", ["owner", "reviewers", "data_owners"], OWNER, (U1, U3), U1,
     [("owner", {OWNER}, ""), ("reviewers", {U2}, ""), ("data_owners", {U3}, "")]),
    ("requester who owns the asset goes to the fallback", ["owner"], REQUESTER, (), REQUESTER,
     [("owner", {GOV1, GOV2}, ONLY_APPROVER)]),
    ("requester who is a group's only member goes to the fallback", ["owner", "requester-only"], OWNER, (),
     REQUESTER, [("owner", {OWNER}, ""), ("requester-only", {GOV1, GOV2}, ONLY_APPROVER)]),
    ("requester who is the only data owner goes to the fallback", ["owner", "data_owners"], OWNER, (REQUESTER,),
     REQUESTER, [("owner", {OWNER}, ""), ("data_owners", {GOV1, GOV2}, ONLY_APPROVER)]),
    ("sole candidate of two steps: the second is rerouted", ["owner", "data_owners"], OWNER, (OWNER,), REQUESTER,
     [("owner", {OWNER}, ""), ("data_owners", {GOV1, GOV2}, SPOKEN_FOR)]),
    ("sole member of two groups: the second is rerouted", ["solo", "owner", "solo"], OWNER, (), REQUESTER,
     [("solo", {U1}, ""), ("owner", {OWNER}, ""), ("solo", {GOV1, GOV2}, SPOKEN_FOR)]),
    ("someone spoken for is dropped from a later group", ["solo", "reviewers"], OWNER, (), REQUESTER,
     [("solo", {U1}, ""), ("reviewers", {U2}, "")]),
    ("a group with no members goes to the fallback", ["owner", "empty"], OWNER, (), REQUESTER,
     [("owner", {OWNER}, ""), ("empty", {GOV1, GOV2}, NO_MEMBERS)]),
    ("no steps at all", [], OWNER, (), REQUESTER, []),
]


@pytest.mark.parametrize(("steps", "owner", "data_owners", "requester", "expected"), [r[1:] for r in ROUTES],
                         ids=[r[0] for r in ROUTES])
def test_plan_steps(policy, steps, owner, data_owners, requester, expected):
    plans = _plan(policy, steps, owner=owner, data_owners=data_owners, requester=requester)
    assert [(p.group, set(p.approvers)) for p in plans] == [(g, a) for g, a, _ in expected]
    for plan, (group, _, why) in zip(plans, expected, strict=True):
        assert requester not in plan.approvers
        if why:
            label = "data owners" if group == "data_owners" else group
            assert plan.rerouted == f"Step '{label}' went to governance: {why}."
        else:
            assert plan.rerouted == ""


def test_the_fallback_never_hands_a_step_to_someone_already_spoken_for(policy):
    # U1 is the only owner and the only data owner; the fallback group holds U1 and U2.
    plans = _plan(policy, ["owner", "data_owners"], owner=U1, data_owners=(U1,), fallback="reviewers")
    assert plans == [StepPlan("owner", frozenset({U1})),
                     StepPlan("data_owners", frozenset({U2}), plans[1].rerouted)]
    assert "reviewers" in plans[1].rerouted


def test_the_fallback_never_hands_a_step_to_the_requester(policy):
    plans = _plan(policy, ["owner"], owner=U1, requester=U1, fallback="reviewers")
    assert plans[0].approvers == frozenset({U2})


@pytest.mark.parametrize(
    ("groups", "fallback", "owner", "requester"),
    [
        ({"governance": set()}, "governance", REQUESTER, REQUESTER),          # fallback group is empty
        ({"governance": {REQUESTER}}, "governance", REQUESTER, REQUESTER),    # only the requester is in it
        ({"governance": {GOV1}}, None, REQUESTER, REQUESTER),                 # the policy names none
    ],
    ids=["empty fallback", "fallback is only the requester", "no fallback group"],
)
def test_a_step_nobody_may_approve_is_invalid_input(policy, groups, fallback, owner, requester):
    with pytest.raises(InvalidInput) as excinfo:
        _plan(policy, ["owner"], owner=owner, requester=requester, groups=groups, fallback=fallback)
    assert "fallback group" in str(excinfo.value)


def test_a_fallback_member_spoken_for_leaves_no_one_for_a_second_step(policy):
    with pytest.raises(InvalidInput):
        _plan(policy, ["owner", "data_owners"], owner=GOV1, data_owners=(GOV1,), groups={"governance": {GOV1}})


@pytest.mark.parametrize("tier", [None, *RiskTier], ids=lambda t: t.value if t else "unclassified")
def test_each_tier_routes_through_its_own_steps(policy, tier):
    custom = policy_with(policy, approvers={"minimal": ["governance", "owner"], "limited": ["owner"],
                                            "high": ["owner", "data_owners", "governance"], "prohibited": []})
    plans = plan_steps(policy=custom, tier=tier, owner_id=OWNER, data_owners=frozenset({U3}),
                       requester_id=REQUESTER, members_of=members(GROUP_TABLE))
    expected = {None: ["governance", "owner"], RiskTier.MINIMAL: ["governance", "owner"],
                RiskTier.LIMITED: ["owner"], RiskTier.HIGH: ["owner", "data_owners", "governance"],
                RiskTier.PROHIBITED: []}[tier]
    assert [p.group for p in plans] == expected == custom.tier(tier).approvers


def test_plan_steps_asks_only_for_the_groups_it_routes_to(policy):
    asked: list[str] = []

    def members_of(group: str) -> frozenset[str]:
        asked.append(group)
        return frozenset(GROUP_TABLE.get(group, set()))

    plan_steps(policy=_policy(policy, ["owner", "reviewers"]), tier=None, owner_id=OWNER, data_owners=frozenset(),
               requester_id=REQUESTER, members_of=members_of)
    assert asked == ["reviewers"]
