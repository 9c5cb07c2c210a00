"""Registering and editing assets through the modal: kind picker, field errors, lineage, owner checks."""

import json

from sqlmodel import select

from bot.views.forms import problems_shown
from tests.bot.conftest import CHANNEL, block_action, submission
from tests.factories import ADMIN, OTHER, OWNER, make_asset
from workflows.db import transaction
from workflows.models import Asset, DecisionLogEntry, Edge, OutboxMessage


def _open_form(harness, kind="model"):
    harness.command(f"register {kind}")
    return harness.opened_view()


def _assets(engine):
    with transaction(engine) as session:
        return list(session.exec(select(Asset).order_by(Asset.id)).all())


def test_register_without_a_kind_opens_the_picker_then_the_kind_form(harness):
    harness.command("register")
    picker = harness.opened_view()
    assert picker["blocks"][0]["accessory"]["action_id"] == "register_pick_kind"
    harness.interact(block_action("register_pick_kind", "", view=picker, selected="dataset"))
    update = harness.fake.last("views.update").args
    assert update["view_id"] == "V0OPEN001" and update["hash"] == "h1"
    block_ids = [b["block_id"] for b in update["view"]["blocks"]]
    assert "details.known_bias" in block_ids and "details.architecture" not in block_ids
    assert json.loads(update["view"]["private_metadata"])["kind"] == "dataset"


def test_each_kind_gets_only_its_own_fields(harness):
    expected = {
        "dataset": ({"intended_use", "collection_process", "known_bias", "size"}, {"derived_from", "runs_on"}),
        "model": ({"task", "architecture", "base_model", "metrics"},
                  {"trained_on", "tested_on", "derived_from", "uses", "runs_on"}),
        "algorithm": ({"language", "framework"}, {"uses", "derived_from", "runs_on"}),
        "infrastructure": ({"provider", "region", "environment"}, set()),
        "documentation": ({"doc_type", "url"}, {"documents"}),
        "system": ({"intended_purpose", "affected_people"}, {"uses", "tested_on", "runs_on"}),
    }
    for kind, (details, edges) in expected.items():
        ids = [b.get("block_id") for b in _open_form(harness, kind)["blocks"]]
        assert {i.split(".", 1)[1] for i in ids if i.startswith("details.")} == details, kind
        assert {i.split(":", 1)[1] for i in ids if i.startswith("edge:")} == edges, kind
        assert "status" not in ids  # registration starts active; only editing shows status


def test_submitting_the_form_registers_with_lineage_and_queues_messages(harness, engine, bot_policy, now):
    dataset = make_asset(engine, policy=bot_policy, now=now, name="Churn events")
    view = _open_form(harness, "model")
    shown = harness.submit(view, {
        "name": "Churn model", "description": "Predicts churn", "owner_id": OTHER, "team": "Growth",
        "location_uri": "s3://models/churn", "sensitivity": "confidential", "contains_personal_data": ["yes"],
        "details.task": "classification", "edge:trained_on": [str(dataset.id)],
    })
    assert shown["title"]["text"] == "Registered" and "*Churn model* `churn-model`" in json.dumps(shown)
    model = _assets(engine)[-1]
    assert (model.slug, model.owner_id, model.team, model.kind) == ("churn-model", OTHER, "Growth", "model")
    assert model.contains_personal_data and model.details["task"] == "classification"
    with transaction(engine) as session:
        edge = session.exec(select(Edge).where(Edge.source_id == model.id)).one()
        rows = session.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        log = session.exec(select(DecisionLogEntry).order_by(DecisionLogEntry.seq.desc())).first()
    assert (edge.type, edge.target_id) == ("trained_on", dataset.id)
    reply, owner_dm = rows[-2], rows[-1]
    assert (reply.method, reply.channel, reply.user) == ("ephemeral", CHANNEL, OWNER)
    assert (owner_dm.method, owner_dm.user) == ("dm", OTHER)
    assert harness.enqueued[-2:] == [reply.id, owner_dm.id]
    assert log.action == "asset.registered" and log.actor == OWNER and log.subject_id == model.id


def test_field_errors_come_back_on_the_right_blocks_and_nothing_is_saved(harness, engine):
    view = _open_form(harness, "documentation")
    response = harness.interact(submission(view, {
        "name": "Card", "location_uri": "not a uri", "details.url": "ftp://files/card", "details.doc_type": None,
    }))
    body = json.loads(response.body)
    assert body["response_action"] == "errors"
    assert body["errors"]["location_uri"] == "A URI cannot contain spaces."
    assert _assets(engine) == []


def test_kind_specific_errors_land_on_detail_blocks(harness, engine):
    view = _open_form(harness, "documentation")
    response = harness.interact(submission(view, {"name": "Card", "details.url": "ftp://files/card",
                                                  "details.doc_type": "model_card"}))
    errors = json.loads(response.body)["errors"]
    assert errors == {"details.url": "Use a http or https address."}
    assert _assets(engine) == []


def test_a_duplicate_slug_is_a_field_error(harness, engine, bot_policy, now):
    make_asset(engine, policy=bot_policy, now=now, name="Churn events")
    view = _open_form(harness, "dataset")
    shown = harness.submit(view, {"name": "Churn events", "description": "Kept"})
    assert "`churn-events` is already taken" in problems_shown(shown)["slug"]
    assert shown["callback_id"] == "asset_register"  # the form again, to fix and submit
    assert next(b for b in shown["blocks"] if b.get("block_id") == "description")["element"]["initial_value"] == "Kept"
    assert len(_assets(engine)) == 1


def test_an_invalid_explicit_slug_is_a_field_error(harness, engine):
    view = _open_form(harness, "dataset")
    errors = json.loads(harness.interact(submission(view, {"name": "X", "slug": "Bad Slug!"})).body)["errors"]
    assert "lowercase" in errors["slug"]


def test_bots_and_deactivated_people_cannot_own_assets(harness, engine):
    view = _open_form(harness, "dataset")
    for owner, message in (("U0BOTTY01", "not a bot"), ("U0GONE001", "deactivated"), ("U0NOBODY1", "does not know")):
        body = json.loads(harness.interact(submission(view, {"name": "Owned", "owner_id": owner})).body)
        assert message in body["errors"]["owner_id"]
    assert _assets(engine) == []


def test_text_over_the_limits_is_refused(harness, engine):
    view = _open_form(harness, "dataset")
    errors = json.loads(harness.interact(submission(view, {"name": "n" * 151})).body)["errors"]
    assert errors["name"] == "Keep this to 150 characters or fewer."
    assert _assets(engine) == []


def test_a_lineage_cycle_is_refused_on_the_picker_block(harness, engine, bot_policy, now):
    base = make_asset(engine, policy=bot_policy, now=now, name="Base", kind="dataset")
    child = make_asset(engine, policy=bot_policy, now=now, name="Child", kind="dataset",
                       lineage={"derived_from": [base.id]})
    harness.interact(block_action("asset_edit_open", str(base.id), response_url=harness.fake.response_url("m")))
    view = harness.opened_view()
    shown = harness.submit(view, {"edge:derived_from": [str(child.id)]})
    assert "cycle" in problems_shown(shown)["edge:derived_from"]
    with transaction(engine) as session:
        assert session.exec(select(Edge).where(Edge.source_id == base.id)).all() == []


def test_only_the_owner_or_an_admin_can_open_or_submit_the_edit_form(harness, engine, bot_policy, now):
    asset = make_asset(engine, policy=bot_policy, now=now, name="Guarded")
    harness.interact(block_action("asset_edit_open", str(asset.id), user=OTHER,
                                  response_url=harness.fake.response_url("m")))
    assert "Only the owner of guarded" in harness.last_reply_text()
    assert not harness.fake.calls_to("views.open")
    harness.interact(block_action("asset_edit_open", str(asset.id), user=ADMIN,
                                  response_url=harness.fake.response_url("m")))
    view = harness.opened_view()
    # A forged submission by someone else is refused on the server, whatever the view says.
    shown = harness.submit(view, {"name": "Hijacked"}, user=OTHER)
    assert "Only the owner" in problems_shown(shown)["name"]
    assert _assets(engine)[0].name == "Guarded"


def test_editing_prefills_the_form_and_saves_changes(harness, engine, bot_policy, now):
    data = make_asset(engine, policy=bot_policy, now=now, name="Data", kind="dataset")
    model = make_asset(engine, policy=bot_policy, now=now, name="Model", kind="model",
                       lineage={"trained_on": [data.id]})
    harness.command("edit model")
    view = harness.opened_view()
    picker = next(b for b in view["blocks"] if b["block_id"] == "edge:trained_on")
    assert [o["value"] for o in picker["element"]["initial_options"]] == [str(data.id)]
    name = next(b for b in view["blocks"] if b["block_id"] == "name")
    assert name["element"]["initial_value"] == "Model"
    shown = harness.submit(view, {"description": "Now described", "edge:trained_on": []})
    assert shown["title"]["text"] == "Saved"
    stored = [a for a in _assets(engine) if a.id == model.id][0]
    assert stored.description == "Now described"
    with transaction(engine) as session:
        assert session.exec(select(Edge)).all() == []
        entry = session.exec(select(DecisionLogEntry).order_by(DecisionLogEntry.seq.desc())).first()
    assert entry.action == "asset.updated"
    assert entry.before == {"description": "", "lineage": ["trained_on:data"]}
    assert entry.after == {"description": "Now described", "lineage": []}


def test_picker_options_are_filtered_by_kind_and_text(harness, engine, bot_policy, now):
    make_asset(engine, policy=bot_policy, now=now, name="Churn events", kind="dataset")
    make_asset(engine, policy=bot_policy, now=now, name="Churn model", kind="model")
    view = _open_form(harness, "model")
    payload = {"type": "block_suggestion", "user": {"id": OWNER}, "team": {"id": "T0001"}, "api_app_id": "A0001",
               "action_id": "pick:trained_on", "block_id": "edge:trained_on", "value": "churn",
               "view": {**view, "id": "V1"}}
    options = json.loads(harness.interact(payload).body)["options"]
    assert [o["text"]["text"] for o in options] == ["Churn events (churn-events)"]
