"""Impact analysis: what is downstream of a dataset, and what marking it personal or restricted sets off."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.factories import (
    OTHER, OWNER, chain_ok, classify_system, edit_asset, log_entries, make_asset, outbox_rows, retire,
)
from workflows import impact, recertification
from workflows.db import transaction
from workflows.enums import AccessLevel, AssetKind, GrantStatus, RequestStatus
from workflows.models import AccessRequest, Asset, Grant

THIRD, FOURTH = "U0THIRD1", "U0FOURTH1"
K = AssetKind


# ---- which edits call for it (pure) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ({"contains_personal_data": False, "sensitivity": "internal"},
         {"contains_personal_data": True, "sensitivity": "internal"},
         {"contains_personal_data": [False, True]}),
        ({"contains_personal_data": False, "sensitivity": "confidential"},
         {"contains_personal_data": False, "sensitivity": "restricted"},
         {"sensitivity": ["confidential", "restricted"]}),
        ({"contains_personal_data": False, "sensitivity": "public"},
         {"contains_personal_data": True, "sensitivity": "restricted"},
         {"contains_personal_data": [False, True], "sensitivity": ["public", "restricted"]}),
        # lowering, unmarking, or staying where it was: nothing
        ({"contains_personal_data": True, "sensitivity": "restricted"},
         {"contains_personal_data": True, "sensitivity": "internal"}, {}),
        ({"contains_personal_data": True, "sensitivity": "internal"},
         {"contains_personal_data": False, "sensitivity": "internal"}, {}),
        ({"contains_personal_data": True, "sensitivity": "restricted"},
         {"contains_personal_data": True, "sensitivity": "restricted"}, {}),
        # raised, but not to restricted
        ({"contains_personal_data": False, "sensitivity": "internal"},
         {"contains_personal_data": False, "sensitivity": "confidential"}, {}),
    ],
)
def test_which_dataset_edits_call_for_impact_analysis(before, after, expected):
    assert impact.dataset_changes(kind=K.DATASET, before=before, after=after) == expected


def test_only_datasets_call_for_it():
    before = {"contains_personal_data": False, "sensitivity": "internal"}
    after = {"contains_personal_data": True, "sensitivity": "restricted"}
    for kind in set(K) - {K.DATASET}:
        assert impact.dataset_changes(kind=kind, before=before, after=after) == {}


# ---- on a real database ---------------------------------------------------------------------------


def grant(engine, asset: Asset, grantee: str, *, now, status: GrantStatus = GrantStatus.ACTIVE,
          level: AccessLevel = AccessLevel.READ) -> Grant:
    """A grant written directly (the approval route is not what these tests are about)."""
    with transaction(engine) as session:
        request = AccessRequest(asset_id=asset.id, requester_id=grantee, level=level, duration_hours=24,
                                justification="analysis", status=RequestStatus.APPROVED, created_at=now,
                                resolved_at=now, resolved_by=asset.owner_id)
        session.add(request)
        session.flush()
        row = Grant(request_id=request.id, asset_id=asset.id, grantee_id=grantee, level=level, status=status,
                    granted_at=now, expires_at=now + timedelta(days=7))
        session.add(row)
        session.flush()
        return row


@pytest.fixture
def world(engine, policy, now):
    """loans (dataset, OWNER) <- derived_from - loans-clean (dataset, OWNER)
    scorer (model, OTHER) trained_on loans-clean; ranker (model, THIRD) trained_on loans;
    approval (system, FOURTH, high risk) uses scorer; old-model (model, THIRD, retired) trained_on loans;
    grants: two active on scorer (high), one revoked on scorer, one active on ranker (unclassified),
    one active on approval (high)."""
    w: dict = {}
    w["loans"] = make_asset(engine, policy=policy, now=now, name="Loans")
    w["clean"] = make_asset(engine, policy=policy, now=now, name="Loans clean",
                            lineage={"derived_from": [w["loans"].id]})
    w["scorer"] = make_asset(engine, policy=policy, now=now, kind="model", name="Scorer", owner_id=OTHER,
                             actor=OTHER, lineage={"trained_on": [w["clean"].id]})
    w["ranker"] = make_asset(engine, policy=policy, now=now, kind="model", name="Ranker", owner_id=THIRD,
                             actor=THIRD, lineage={"tested_on": [w["loans"].id]})
    w["old"] = make_asset(engine, policy=policy, now=now, kind="model", name="Old model", owner_id=THIRD,
                          actor=THIRD, lineage={"trained_on": [w["loans"].id]})
    retire(engine, w["old"], policy=policy, now=now, actor=THIRD)
    w["approval"] = make_asset(engine, policy=policy, now=now, kind="system", name="Loan approval",
                               owner_id=FOURTH, actor=FOURTH, lineage={"uses": [w["scorer"].id]})
    classify_system(engine, w["approval"], "high", policy=policy, now=now, actor=FOURTH)
    w["g_scorer_1"] = grant(engine, w["scorer"], "U0ANALYST1", now=now)
    w["g_scorer_2"] = grant(engine, w["scorer"], "U0ANALYST2", now=now, level=AccessLevel.USE)
    w["g_scorer_revoked"] = grant(engine, w["scorer"], "U0ANALYST3", now=now, status=GrantStatus.REVOKED)
    w["g_ranker"] = grant(engine, w["ranker"], "U0ANALYST1", now=now)
    w["g_approval"] = grant(engine, w["approval"], "U0ANALYST4", now=now)
    w["g_old"] = grant(engine, w["old"], "U0ANALYST5", now=now)
    return w


def test_downstream_impact_lists_models_and_systems_with_their_active_grants(engine, world):
    with transaction(engine) as session:
        found = impact.downstream_impact(session=session, dataset=session.get(Asset, world["loans"].id))
        by_slug = {item.asset.slug: item for item in found.affected}
        # through derived data; not the derived dataset itself, not the retired model
        assert list(by_slug) == ["loan-approval", "ranker", "scorer"]
        assert [g.id for g in by_slug["scorer"].grants] == [world["g_scorer_1"].id, world["g_scorer_2"].id]
        assert [g.grantee_id for g in by_slug["loan-approval"].grants] == ["U0ANALYST4"]
        assert {slug for slug, item in by_slug.items() if item.high_risk} == {"loan-approval", "scorer"}
        assert sorted(found.by_owner()) == sorted([OTHER, THIRD, FOURTH])
        assert {g.id for g in found.grants_to_recertify()} == {
            world["g_scorer_1"].id, world["g_scorer_2"].id, world["g_approval"].id}


def _impact_rows(engine, after_id: int):
    return [r for r in outbox_rows(engine, after_id=after_id) if r.payload.get("template") == "impact_notice"]


def _last_id(engine) -> int:
    rows = outbox_rows(engine)
    return rows[-1].id if rows else 0


def _last_seq(engine) -> int:
    entries = log_entries(engine)
    return entries[-1].seq if entries else 0


def test_marking_personal_data_tells_each_affected_owner_once_logs_and_queues_recertification(
        engine, policy, now, world):
    outbox_before, seq_before = _last_id(engine), _last_seq(engine)
    edit_asset(engine, world["loans"], policy=policy, now=now, contains_personal_data=True)

    rows = _impact_rows(engine, outbox_before)
    assert sorted(r.user for r in rows) == sorted([OTHER, THIRD, FOURTH])  # one each; not the editor
    assert all(r.method == "dm" for r in rows)
    by_user = {r.user: r.payload for r in rows}
    assert by_user[OTHER]["asset_ids"] == [world["scorer"].id]
    assert by_user[OTHER]["recertify_ids"] == [world["g_scorer_1"].id, world["g_scorer_2"].id]
    assert by_user[THIRD]["asset_ids"] == [world["ranker"].id] and by_user[THIRD]["recertify_ids"] == []
    assert by_user[FOURTH]["asset_ids"] == [world["approval"].id]
    assert by_user[OTHER]["changes"] == {"contains_personal_data": [False, True]}
    assert by_user[OTHER]["dataset_id"] == world["loans"].id and by_user[OTHER]["actor"] == OWNER

    entries = log_entries(engine, after_seq=seq_before)
    assert [e.action for e in entries] == ["asset.updated", "asset.impact_assessed"] + [
        "grant.recertification_requested"] * 3
    assessed = entries[1]
    assert assessed.subject_type == "asset" and assessed.subject_id == world["loans"].id
    assert assessed.actor == OWNER
    assert sorted(assessed.after["affected"]) == sorted(
        [world["scorer"].id, world["ranker"].id, world["approval"].id])
    # only active grants on high-risk assets: not the revoked one, not the unclassified ranker's, not the
    # retired model's
    recert = entries[2:]
    assert {e.subject_id for e in recert} == {
        world["g_scorer_1"].id, world["g_scorer_2"].id, world["g_approval"].id}
    assert all(e.subject_type == "grant" and e.after["dataset"] == world["loans"].id for e in recert)
    assert {e.subject_slug for e in recert} == {"scorer", "loan-approval"}
    assert "personal data" in recert[0].after["reason"]
    assert chain_ok(engine)
    with transaction(engine) as s:  # the sweep finds them through the schedule alone, due at once
        due = recertification.assets_due(session=s, now=now)
    assert sorted(due) == sorted([world["scorer"].id, world["approval"].id])


def test_the_editor_is_not_told_and_an_owner_of_two_gets_one_dm(engine, policy, now):
    data = make_asset(engine, policy=policy, now=now, name="Claims", sensitivity="internal")
    mine = make_asset(engine, policy=policy, now=now, kind="model", name="Mine",
                      lineage={"trained_on": [data.id]})
    first = make_asset(engine, policy=policy, now=now, kind="model", name="First", owner_id=OTHER,
                       actor=OTHER,
                       lineage={"trained_on": [data.id]})
    second = make_asset(engine, policy=policy, now=now, kind="system", name="Second", owner_id=OTHER,
                        actor=OTHER,
                        lineage={"uses": [mine.id]})
    outbox_before = _last_id(engine)
    edit_asset(engine, data, policy=policy, now=now, sensitivity="restricted")
    rows = _impact_rows(engine, outbox_before)
    assert [r.user for r in rows] == [OTHER]
    assert rows[0].payload["asset_ids"] == [first.id, second.id]
    assert rows[0].payload["changes"] == {"sensitivity": ["internal", "restricted"]}
    (assessed,) = [e for e in log_entries(engine) if e.action == "asset.impact_assessed"]
    assert sorted(assessed.after["affected"]) == sorted([mine.id, first.id, second.id])
    assert assessed.after["notified"] == [OTHER]


def test_an_admin_editing_someone_elses_dataset_is_the_one_left_out(engine, policy, now, world):
    outbox_before = _last_id(engine)
    edit_asset(engine, world["loans"], policy=policy, now=now, actor=OTHER, groups=frozenset({"admins"}),
               sensitivity="restricted")
    assert sorted(r.user for r in _impact_rows(engine, outbox_before)) == sorted([THIRD, FOURTH])


def _nothing_happened(engine, outbox_before: int, seq_before: int) -> bool:
    actions = [e.action for e in log_entries(engine, after_seq=seq_before)]
    return not _impact_rows(engine, outbox_before) and "asset.impact_assessed" not in actions \
        and "grant.recertification_requested" not in actions


def test_lowering_sensitivity_or_unmarking_personal_data_sets_nothing_off(engine, policy, now, world):
    edit_asset(engine, world["loans"], policy=policy, now=now, sensitivity="restricted",
               contains_personal_data=True)
    outbox_before, seq_before = _last_id(engine), _last_seq(engine)
    with transaction(engine) as session:
        loans = session.get(Asset, world["loans"].id)
    edit_asset(engine, loans, policy=policy, now=now, sensitivity="internal")
    with transaction(engine) as session:
        loans = session.get(Asset, world["loans"].id)
    edit_asset(engine, loans, policy=policy, now=now, contains_personal_data=False)
    with transaction(engine) as session:
        loans = session.get(Asset, world["loans"].id)
    edit_asset(engine, loans, policy=policy, now=now, description="Just a new description")
    assert _nothing_happened(engine, outbox_before, seq_before)


def test_a_dataset_with_nothing_built_from_it_sets_nothing_off(engine, policy, now):
    lonely = make_asset(engine, policy=policy, now=now, name="Lonely")
    # a derived dataset is downstream, but it is data, not something trained on it
    make_asset(engine, policy=policy, now=now, name="Derived", lineage={"derived_from": [lonely.id]})
    retired = make_asset(engine, policy=policy, now=now, kind="model", name="Gone", owner_id=OTHER,
                         actor=OTHER,
                         lineage={"trained_on": [lonely.id]})
    retire(engine, retired, policy=policy, now=now, actor=OTHER)
    outbox_before, seq_before = _last_id(engine), _last_seq(engine)
    edit_asset(engine, lonely, policy=policy, now=now, contains_personal_data=True, sensitivity="restricted")
    assert _nothing_happened(engine, outbox_before, seq_before)


def test_a_model_marked_personal_is_not_a_dataset_change(engine, policy, now):
    model = make_asset(engine, policy=policy, now=now, kind="model", name="Model")
    make_asset(engine, policy=policy, now=now, kind="system", name="User", owner_id=OTHER, actor=OTHER,
               lineage={"uses": [model.id]})
    outbox_before, seq_before = _last_id(engine), _last_seq(engine)
    edit_asset(engine, model, policy=policy, now=now, contains_personal_data=True, sensitivity="restricted")
    assert _nothing_happened(engine, outbox_before, seq_before)


def test_a_refused_edit_leaves_no_trace_of_impact(engine, policy, now, world):
    from workflows.errors import NotAllowed

    outbox_before, seq_before = _last_id(engine), _last_seq(engine)
    with pytest.raises(NotAllowed):
        edit_asset(engine, world["loans"], policy=policy, now=now, actor=THIRD, contains_personal_data=True)
    assert _nothing_happened(engine, outbox_before, seq_before)
