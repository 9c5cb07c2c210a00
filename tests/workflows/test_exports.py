"""Exports on a real database: the CycloneDX ML-BOM, inventory rows, the decision log stream and the
access view, now and replayed from the log as of past instants."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import timedelta

import pytest
from sqlmodel import select

from tests.factories import (
    GOV1,
    OTHER,
    OWNER,
    REQUESTER,
    approve_request,
    classify_system,
    log_entries,
    make_asset,
    make_request,
    members,
    policy_with,
)
from workflows import access, audit, provisioning
from workflows.db import transaction
from workflows.emergency import break_glass
from workflows.enums import AccessLevel, GrantStatus, RiskTier
from workflows.errors import InvalidInput
from workflows.exports import access as access_export
from workflows.exports import decisions as decisions_export
from workflows.exports import inventory as inventory_export
from workflows.exports.bom import build_bom, parse_metrics, validation_errors
from workflows.exports.common import parse_tier, parse_when
from workflows.inventory import Actor
from workflows.models import Grant, ProvisioningJob

HOUR = timedelta(hours=1)


# ---- the inventory -------------------------------------------------------------------------------


def make_inventory(engine, policy, now) -> dict[str, object]:
    """One asset of every kind, wired with every kind of lineage edge, under a high-risk system."""
    def make(**fields):
        return make_asset(engine, policy=policy, now=now, **fields)

    gpu = make(kind="infrastructure", name="GPU cluster", details={"provider": "aws", "region": "eu-west-1",
                                                                    "environment": "production"})
    raw = make(kind="dataset", name="Raw claims", sensitivity="restricted", contains_personal_data=True,
               location_uri="s3://claims/raw", license="proprietary", team="Claims data",
               details={"intended_use": "Claims history", "known_bias": "Few claims from rural areas"})
    clean = make(kind="dataset", name="Clean claims", license="CC-BY-4.0", owner_id=OTHER,
                 details={"size": "2M rows", "collection_process": "Deduplicated"},
                 lineage={"derived_from": [raw.id], "runs_on": [gpu.id]})
    holdout = make(kind="dataset", name="Holdout claims", details={"intended_use": "Evaluation"})
    code = make(kind="algorithm", name="Feature code", license="Apache-2.0", version="1.4.0",
                details={"language": "python", "framework": "pandas"}, lineage={"uses": [clean.id]})
    base = make(kind="model", name="Base scorer", details={"task": "classification"})
    model = make(kind="model", name="Fraud scorer", version="2.1", license="Apache-2.0 OR MIT",
                 location_uri="https://models.example.com/fraud-scorer", description="Scores claims for fraud",
                 details={"task": "binary classification", "architecture": "gradient boosted trees",
                          "base_model": "xgboost-base", "metrics": "AUC 0.91, F1: 0.82; recall=87% on holdout"},
                 lineage={"trained_on": [clean.id, raw.id], "tested_on": [holdout.id], "derived_from": [base.id],
                          "uses": [code.id], "runs_on": [gpu.id]})
    system = make(kind="system", name="Claims triage", details={"intended_purpose": "Route claims to investigators",
                                                                "affected_people": "Policy holders"},
                  lineage={"uses": [model.id], "tested_on": [holdout.id], "runs_on": [gpu.id]})
    card = make(kind="documentation", name="Fraud scorer card",
                details={"doc_type": "model_card", "url": "https://docs.example.com/fraud-card"},
                lineage={"documents": [model.id]})
    classify_system(engine, system, "high", policy=policy, now=now)
    return {"gpu": gpu, "raw": raw, "clean": clean, "holdout": holdout, "code": code, "base": base,
            "model": model, "system": system, "card": card}


def test_the_cyclonedx_bom_passes_strict_validation_against_the_1_6_schema(engine, policy, now):
    assets = make_inventory(engine, policy, now)
    with transaction(engine) as session:
        bom = build_bom(session=session, now=now)

    assert validation_errors(bom) == []
    assert (bom["bomFormat"], bom["specVersion"]) == ("CycloneDX", "1.6")
    components = {c["bom-ref"]: c for c in bom["components"]}
    assert set(components) == {a.slug for a in assets.values()}
    types = {slug: c["type"] for slug, c in components.items()}
    assert types == {"gpu-cluster": "platform", "raw-claims": "data", "clean-claims": "data",
                     "holdout-claims": "data", "feature-code": "library", "base-scorer": "machine-learning-model",
                     "fraud-scorer": "machine-learning-model", "claims-triage": "application",
                     "fraud-scorer-card": "data"}

    # Lineage as dependencies: every dependency edge, never `documents`.
    depends = {d["ref"]: set(d.get("dependsOn", [])) for d in bom["dependencies"]}
    assert depends["fraud-scorer"] == {"clean-claims", "raw-claims", "holdout-claims", "base-scorer",
                                       "feature-code", "gpu-cluster"}
    assert depends["claims-triage"] == {"fraud-scorer", "holdout-claims", "gpu-cluster"}
    assert depends["clean-claims"] == {"raw-claims", "gpu-cluster"}
    assert depends["fraud-scorer-card"] == set() and depends["gpu-cluster"] == set()
    every_ref = {ref for d in bom["dependencies"] for ref in [d["ref"], *d.get("dependsOn", [])]}
    assert every_ref <= set(components)

    model = components["fraud-scorer"]
    assert (model["name"], model["version"], model["description"]) == ("Fraud scorer", "2.1", "Scores claims for fraud")
    assert model["licenses"] == [{"expression": "Apache-2.0 OR MIT"}]
    card = model["modelCard"]
    parameters = card["modelParameters"]
    assert parameters["datasets"] == [{"ref": "clean-claims"}, {"ref": "raw-claims"}, {"ref": "holdout-claims"}]
    assert all(types[d["ref"]] == "data" for d in parameters["datasets"])
    assert (parameters["task"], parameters["architectureFamily"], parameters["modelArchitecture"]) == (
        "binary classification", "gradient boosted trees", "xgboost-base")
    assert card["quantitativeAnalysis"]["performanceMetrics"] == [
        {"type": "AUC", "value": "0.91"}, {"type": "F1", "value": "0.82"},
        {"type": "recall", "value": "87%", "slice": "holdout"}]
    considerations = card["considerations"]
    assert considerations["useCases"] == ["claims-triage: Route claims to investigators"]
    assert considerations["technicalLimitations"] == ["raw-claims: Few claims from rural areas"]
    assert {"name": "claims-triage affects: Policy holders"} in considerations["ethicalConsiderations"]
    assert {"type": "model-card", "url": "https://docs.example.com/fraud-card",
            "comment": "Model card: fraud-scorer-card"} in model["externalReferences"]
    assert {"type": "distribution", "url": "https://models.example.com/fraud-scorer",
            "comment": "location"} in model["externalReferences"]
    assert "modelCard" in components["base-scorer"] and "data" not in model

    raw = components["raw-claims"]
    assert "modelCard" not in raw
    [data] = raw["data"]
    assert (data["type"], data["classification"], data["sensitiveData"]) == ("dataset", "restricted",
                                                                            ["personal data"])
    assert data["contents"]["url"] == "s3://claims/raw"
    assert data["governance"]["owners"] == [{"contact": {"name": OWNER}}, {"organization": {"name": "Claims data"}}]
    assert raw["licenses"] == [{"license": {"name": "proprietary"}}]
    clean = components["clean-claims"]["data"][0]
    assert clean["governance"]["owners"] == [{"contact": {"name": OTHER}}]
    assert {"name": "size", "value": "2M rows"} in clean["contents"]["properties"]
    assert components["clean-claims"]["licenses"] == [{"license": {"id": "CC-BY-4.0"}}]
    assert components["fraud-scorer-card"]["data"][0]["type"] == "other"

    properties = {p["name"]: p["value"] for p in components["clean-claims"]["properties"]}
    assert properties["steward:effective_tier"] == "high" and properties["steward:owner"] == OTHER


def test_the_validator_is_strict_so_a_passing_bom_means_something(engine, policy, now):
    make_inventory(engine, policy, now)
    with transaction(engine) as session:
        bom = build_bom(session=session, now=now)
    wrong_type = copy.deepcopy(bom)
    wrong_type["components"][0]["type"] = "document"
    unknown_field = copy.deepcopy(bom)
    unknown_field["components"][0]["owner"] = OWNER
    bad_classification = copy.deepcopy(bom)
    dataset = next(c for c in bad_classification["components"] if c["bom-ref"] == "raw-claims")
    dataset["data"][0]["classification"] = 3
    for broken in (wrong_type, unknown_field, bad_classification):
        assert validation_errors(broken), "the strict validator accepted a broken document"


@pytest.mark.parametrize(("text", "expected"), [
    ("", []),
    ("AUC 0.91", [{"type": "AUC", "value": "0.91"}]),
    ("F1: 0.8, precision=0.75", [{"type": "F1", "value": "0.8"}, {"type": "precision", "value": "0.75"}]),
    ("accuracy 93 %\ntop-5 error 0.04 on ImageNet val",
     [{"type": "accuracy", "value": "93%"}, {"type": "top-5 error", "value": "0.04", "slice": "ImageNet val"}]),
    ("Works well in practice", []),
    ("mean abs error -0.5; looks good", [{"type": "mean abs error", "value": "-0.5"}]),
])
def test_metrics_are_parsed_from_name_value_pairs(text, expected):
    assert parse_metrics(text) == expected


def test_inventory_rows_carry_every_field_details_tier_and_lineage(engine, policy, now):
    assets = make_inventory(engine, policy, now)
    with transaction(engine) as session:
        items = list(inventory_export.iter_inventory(session=session, batch_size=2))
        assert inventory_export.count_assets(session=session) == len(assets)
    assert [i.asset.slug for i in items] == sorted(a.slug for a in assets.values())
    records = {r["slug"]: r for r in map(inventory_export.json_record, items)}
    model = records["fraud-scorer"]
    assert set(inventory_export.COMMON_FIELDS) <= set(model)
    assert (model["kind"], model["effective_tier"], model["risk_tier"]) == ("model", "high", None)
    assert model["details"]["architecture"] == "gradient boosted trees"
    assert model["lineage"]["trained_on"] == ["clean-claims", "raw-claims"]
    assert model["lineage"]["documents"] == []
    assert records["claims-triage"]["risk_tier"] == "high"
    assert records["fraud-scorer-card"]["lineage"]["documents"] == ["fraud-scorer"]

    rows = {row[0]: dict(zip(inventory_export.CSV_COLUMNS, row, strict=True))
            for row in map(inventory_export.csv_row, items)}
    assert rows["fraud-scorer"]["lineage.trained_on"] == "clean-claims raw-claims"
    assert rows["fraud-scorer"]["details.metrics"].startswith("AUC 0.91")
    assert rows["raw-claims"]["contains_personal_data"] == "true"
    assert rows["gpu-cluster"]["details.environment"] == "production"
    assert rows["clean-claims"]["effective_tier"] == "high"


# ---- the decision log ----------------------------------------------------------------------------


def _recompute(entry: dict) -> str:
    body = {name: entry[name] for name in decisions_export.BODY_FIELDS}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((entry["prev_hash"] + canonical).encode("utf-8")).hexdigest()


def test_decisions_stream_in_seq_order_with_hashes_an_auditor_can_recompute(engine, policy, now):
    make_inventory(engine, policy, now)
    stored = log_entries(engine)
    exported = list(decisions_export.stream_decisions(engine=engine, batch_size=3))
    assert [e["seq"] for e in exported] == [e.seq for e in stored] == list(range(1, len(stored) + 1))
    assert list(exported[0]) == list(decisions_export.FIELDS)
    prev = audit.GENESIS_HASH
    for entry, original in zip(exported, stored, strict=True):
        assert entry["prev_hash"] == prev and _recompute(entry) == entry["hash"] == original.hash
        prev = entry["hash"]
    # The export is a snapshot: entries appended later are not in it, and JSONL round-trips exactly.
    assert json.loads(decisions_export.jsonl_line(exported[-1])) == exported[-1]
    limited = list(decisions_export.stream_decisions(engine=engine, up_to_seq=4, batch_size=3))
    assert [e["seq"] for e in limited] == [1, 2, 3, 4]


def test_decisions_filter_by_time_asset_and_current_tier(engine, policy, now):
    early = make_asset(engine, policy=policy, now=now - 48 * HOUR, kind="dataset", name="Old data")
    model = make_asset(engine, policy=policy, now=now, kind="model", name="Fraud scorer")
    other = make_asset(engine, policy=policy, now=now, kind="model", name="Churn model")
    request = make_request(engine, model, policy=policy, now=now + HOUR)
    approve_request(engine, request, OWNER, now=now + 2 * HOUR)
    system = make_asset(engine, policy=policy, now=now + 3 * HOUR, kind="system", name="Claims triage",
                        lineage={"uses": [model.id]})
    classify_system(engine, system, "high", policy=policy, now=now + 4 * HOUR)

    def seqs(**filters):
        chosen = decisions_export.DecisionFilter(**filters)
        return [(e["action"], e["subject_slug"])
                for e in decisions_export.stream_decisions(engine=engine, filters=chosen, batch_size=2)]

    assert seqs(until=now - HOUR) == [("asset.registered", early.slug)]
    assert seqs(since=now + HOUR, until=now + 2 * HOUR) == [
        ("access.requested", model.slug), ("access.approved_step", model.slug), ("access.approved", model.slug),
        ("access.granted", model.slug)]
    about_model = seqs(asset_id=model.id)
    assert about_model[0] == ("asset.registered", model.slug)
    assert {"access.requested", "access.granted"} <= {action for action, _ in about_model}
    assert all(slug == model.slug for _, slug in about_model)
    assert seqs(asset_id=other.id) == [("asset.registered", other.slug)]
    high = seqs(tier=RiskTier.HIGH)
    assert {slug for _, slug in high} == {model.slug, system.slug}
    assert ("access.granted", model.slug) in high and ("asset.classified", system.slug) in high
    assert seqs(tier=RiskTier.MINIMAL) == []
    with transaction(engine) as session:
        head = decisions_export.head_seq(session=session)
        assert decisions_export.count_decisions(session=session, filters=decisions_export.DecisionFilter(
            tier=RiskTier.HIGH), up_to_seq=head) == len(high)


def test_csv_cells_keep_json_canonical_so_hashes_recompute_from_csv_too(engine, policy, now):
    make_asset(engine, policy=policy, now=now, kind="dataset", name="Données clients")
    [entry] = list(decisions_export.stream_decisions(engine=engine))
    cells = dict(zip(decisions_export.FIELDS, decisions_export.csv_row(entry), strict=True))
    assert cells["before"] == "" and json.loads(cells["after"]) == entry["after"]
    rebuilt = {**entry, "before": None, "after": json.loads(cells["after"])}
    assert _recompute(rebuilt) == cells["hash"]


@pytest.mark.parametrize(("text", "end_of_day", "expected"), [
    ("2026-03-31", False, "2026-03-31T00:00:00+00:00"),
    ("2026-03-31", True, "2026-03-31T23:59:59.999999+00:00"),
    ("2026-03-31T17:00:00Z", True, "2026-03-31T17:00:00+00:00"),
    ("2026-03-31T19:00:00+02:00", False, "2026-03-31T17:00:00+00:00"),
    ("2026-03-31 17:00", False, "2026-03-31T17:00:00+00:00"),
])
def test_dates_parse_to_utc_instants(text, end_of_day, expected):
    assert parse_when(text, option="--since", end_of_day=end_of_day).isoformat() == expected


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "31/03/2026", ""])
def test_bad_dates_and_tiers_are_refused_with_the_option_named(text):
    with pytest.raises(InvalidInput, match="--until"):
        parse_when(text, option="--until")
    with pytest.raises(InvalidInput, match="minimal, limited, high, prohibited"):
        parse_tier(text or "none")


# ---- access, now and as of -----------------------------------------------------------------------

GRANTEE_A, GRANTEE_B, GRANTEE_C, GRANTEE_D = "U0GRANTA", "U0GRANTB", "U0GRANTC", "U0GRANTD"


def test_access_as_of_is_replayed_from_the_log_and_matches_the_tables_at_every_instant(engine, policy, now):
    """A scripted history (grant, break-glass, auto-approval, extension, expiry, revoke, provisioning), each
    step at an explicit `now`. After every step the tables are read; later, the log alone is replayed to
    each of those instants (and to a moment between steps), and must say the same."""
    two_step = policy_with(policy, approvers={"minimal": ["owner", "governance"]})
    auto = policy_with(policy, approvers={"minimal": []})
    manual = policy_with(policy, connectors={"by-hand": {"type": "manual"}}, provisioning_connector="by-hand")
    model = make_asset(engine, policy=policy, now=now, kind="model", name="Fraud scorer")
    snapshots: list[tuple] = []

    def tables(at):
        with transaction(engine) as session:
            rows = list(access_export.current_access(session=session, statuses=tuple(GrantStatus), batch_size=2))
        snapshots.append((at, rows))
        return {row.grant_id: row for row in rows}

    # 1. A two-step request: the owner, then governance.
    t1 = now + HOUR
    first = make_request(engine, model, policy=two_step, now=t1, requester=GRANTEE_A, duration_hours=24)
    approve_request(engine, first, OWNER, now=t1)
    tables(t1)
    t2 = now + 2 * HOUR
    approve_request(engine, first, GOV1, now=t2)
    state = tables(t2)
    [g1] = state.values()
    assert (g1.grantee, g1.approved_by, g1.status, g1.expires_at) == (
        GRANTEE_A, (GOV1, OWNER), GrantStatus.ACTIVE, t2 + 24 * HOUR)

    # 2. Break-glass: active at once, flagged as an emergency.
    t3 = now + 3 * HOUR
    with transaction(engine) as session:
        emergency = break_glass(session=session, asset_id=model.id, level=AccessLevel.USE, requester=Actor(GRANTEE_B),
                                justification="Incident INC-7", now=t3, policy=policy)
    g2 = tables(t3)[emergency.id]
    assert (g2.emergency, g2.approved_by, g2.approval) == (True, (GRANTEE_B,), "break-glass")

    # 3. A request the policy approves on its own.
    t4 = now + 4 * HOUR
    auto_request = make_request(engine, model, policy=auto, now=t4, requester=GRANTEE_C, duration_hours=48,
                                level="admin")
    g3_id = next(r.grant_id for r in tables(t4).values() if r.grantee == GRANTEE_C)
    assert auto_request.id

    # 4. The first grant is extended through a renewal both steps approve.
    t5, t6 = now + 5 * HOUR, now + 6 * HOUR
    with transaction(engine) as session:
        renewal = access.request_extension(session=session, grant_id=g1.grant_id, actor=Actor(GRANTEE_A), now=t5,
                                           policy=two_step, members_of=members())
    tables(t5)
    approve_request(engine, renewal, OWNER, now=t6)
    approve_request(engine, renewal, GOV1, now=t6)
    extended = tables(t6)[g1.grant_id]
    assert extended.expires_at == t2 + 48 * HOUR

    # 5. The emergency grant runs out and the sweep expires it.
    t7 = t3 + timedelta(hours=policy.emergency.max_hours) + HOUR
    with transaction(engine) as session:
        assert access.expire_grant(session=session, grant_id=emergency.id, now=t7) is not None
    assert tables(t7)[emergency.id].status == GrantStatus.EXPIRED

    # 6. The owner revokes the auto-approved grant.
    t8 = t7 + HOUR
    with transaction(engine) as session:
        access.revoke_grant(session=session, grant_id=g3_id, actor=Actor(OWNER), reason="No longer needed", now=t8,
                            policy=policy)
    assert tables(t8)[g3_id].status == GrantStatus.REVOKED

    # 7. A grant a connector sets up: provisioning at approval, active (and timed) once the owner confirms.
    t9, t10 = t8 + HOUR, t8 + 3 * HOUR
    fourth = make_request(engine, model, policy=manual, now=t9, requester=GRANTEE_D, duration_hours=10)
    with transaction(engine) as session:
        access.approve(session=session, request_id=fourth.id, approver_id=OWNER, now=t9, policy=manual)
    g4 = next(r for r in tables(t9).values() if r.grantee == GRANTEE_D)
    assert g4.status == GrantStatus.PROVISIONING
    with transaction(engine) as session:
        job = session.exec(select(ProvisioningJob).where(ProvisioningJob.grant_id == g4.grant_id)).one()
        provisioning.confirm_job(session=session, job_id=job.id, actor=Actor(OWNER), now=t10, policy=manual)
    active = tables(t10)[g4.grant_id]
    assert (active.status, active.granted_at, active.expires_at) == (GrantStatus.ACTIVE, t10, t10 + 10 * HOUR)

    # Replayed later, from the log alone, the past looks exactly as the tables said at the time.
    assert access_export.replay_grants(engine=engine, as_of=now) == []
    for at, rows in snapshots:
        assert access_export.replay_grants(engine=engine, as_of=at, batch_size=3) == rows, at
        between = at + timedelta(minutes=30)
        if all(between < later for later, _ in snapshots if later > at):
            assert access_export.replay_grants(engine=engine, as_of=between) == rows, between
        active_then = [row for row in rows if row.status == GrantStatus.ACTIVE]
        assert access_export.access_as_of(engine=engine, as_of=at) == active_then

    # Now: only active grants, and the table view agrees with a replay to the last step.
    with transaction(engine) as session:
        current = list(access_export.current_access(session=session))
    assert [(r.grantee, r.status) for r in current] == [(GRANTEE_A, GrantStatus.ACTIVE),
                                                        (GRANTEE_D, GrantStatus.ACTIVE)]
    assert current == access_export.access_as_of(engine=engine, as_of=t10 + HOUR)
    with transaction(engine) as session:
        assert access_export.count_active_grants(session=session) == 2
        assert {g.id for g in session.exec(select(Grant)).all()} == {r.grant_id for r in snapshots[-1][1]}


def test_access_csv_rows_say_who_approved_and_until_when(engine, policy, now):
    model = make_asset(engine, policy=policy, now=now, kind="model", name="Fraud scorer")
    request = make_request(engine, model, policy=policy, now=now, requester=REQUESTER, level="use")
    approve_request(engine, request, OWNER, now=now)
    with transaction(engine) as session:
        [row] = list(access_export.current_access(session=session))
    assert dict(zip(access_export.CSV_COLUMNS, row.csv_row(), strict=True)) == {
        "grant_id": str(row.grant_id), "asset": "fraud-scorer", "grantee": REQUESTER, "level": "use",
        "granted_at": "2026-03-02T09:00:00.000000+00:00", "expires_at": "2026-03-03T09:00:00.000000+00:00",
        "approved_by": OWNER, "approval": "", "emergency": "false", "status": "active"}
