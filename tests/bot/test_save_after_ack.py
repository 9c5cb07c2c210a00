"""Forms are acked with "Saving…" before anything touches the database, saved after the ack, and the modal
then shows the outcome, or the form again holding everything the person entered."""

import json

from sqlmodel import select

from bot.views.forms import problems_shown, refilled_view
from tests.bot.conftest import CHANNEL, GOVERNANCE, submission
from tests.factories import OWNER, log_actions, make_asset, reload, retire
from workflows.db import transaction
from workflows.models import Asset, Classification


def _block(view, block_id):
    return next(b for b in view["blocks"] if b.get("block_id") == block_id)


def _slugs(engine):
    with transaction(engine) as session:
        return sorted(session.exec(select(Asset.slug)).all())


def test_the_ack_comes_before_the_save_and_the_modal_then_shows_the_outcome(harness, engine):
    queued = []
    harness.ctx.after_ack = queued.append  # hold the work after the ack, as the quiet lane may
    harness.command("register model")
    form = harness.opened_view()
    response = harness.interact(submission(form, {"name": "Churn model", "details.task": "classification"}))
    ack = json.loads(response.body)
    assert ack["response_action"] == "update" and "Saving *Churn model*" in json.dumps(ack["view"])
    assert "submit" not in ack["view"] and ack["view"]["private_metadata"] == form["private_metadata"]
    assert _slugs(engine) == [] and not harness.fake.calls_to("views.update")  # nothing saved yet

    [save] = queued
    save()
    assert _slugs(engine) == ["churn-model"]
    update = harness.fake.last("views.update").args
    assert update["view_id"] == "V0SUBMIT1" and update["view"]["title"]["text"] == "Registered"


def test_a_failed_save_gives_the_form_back_with_every_answer(harness, engine, bot_policy, now):
    dataset = make_asset(engine, policy=bot_policy, now=now, name="Churn events")
    make_asset(engine, policy=bot_policy, now=now, name="Churn model", kind="model")
    harness.command("register model")
    shown = harness.submit(harness.opened_view(), {
        "name": "Churn model", "description": "Predicts churn", "team": "Growth", "sensitivity": "confidential",
        "details.task": "classification", "edge:trained_on": [str(dataset.id)],
    })
    assert shown["callback_id"] == "asset_register" and shown["submit"]["text"] == "Register"
    problems = problems_shown(shown)
    assert "Not saved" in problems[""] and "already taken" in problems["slug"]
    assert _block(shown, "name")["element"]["initial_value"] == "Churn model"
    assert _block(shown, "description")["element"]["initial_value"] == "Predicts churn"
    assert _block(shown, "sensitivity")["element"]["initial_option"]["value"] == "confidential"
    assert [o["value"] for o in _block(shown, "edge:trained_on")["element"]["initial_options"]] == [str(dataset.id)]
    assert _slugs(engine) == ["churn-events", "churn-model"]  # only the two made before
    assert log_actions(engine).count("asset.registered") == 2


def test_a_form_given_back_can_be_fixed_and_submitted_again(harness, engine, bot_policy, now):
    make_asset(engine, policy=bot_policy, now=now, name="Churn model", kind="model")
    harness.command("register model")
    again = harness.submit(harness.opened_view(), {"name": "Churn model", "details.task": "classification"})
    again = harness.submit(again, {"slug": "Bad Slug"})  # refused in the ack: the form stays as it was
    assert "lowercase" in again["errors"]["slug"]
    again = harness.submit(harness.opened_view(), {"slug": "churn-model"})  # taken: given back once more
    assert [b.get("block_id") for b in again["blocks"]].count("problem:top") == 1  # the old problems dropped
    shown = harness.submit(again, {"slug": "churn-model-v2"})
    assert shown["title"]["text"] == "Registered"
    assert _slugs(engine) == ["churn-model", "churn-model-v2"]
    assert reload(engine, _asset(engine, "churn-model-v2")).details["task"] == "classification"


def _asset(engine, slug):
    with transaction(engine) as session:
        return session.exec(select(Asset).where(Asset.slug == slug)).one()


def test_when_the_modal_was_closed_a_failed_save_is_told_where_the_person_was(harness, engine, bot_policy, now):
    make_asset(engine, policy=bot_policy, now=now, name="Churn model", kind="model")
    harness.command("register model")
    form = harness.opened_view()
    harness.fake.on("views.update", lambda args: {"ok": False, "error": "not_found"})  # closed meanwhile
    harness.interact(submission(form, {"name": "Churn model", "details.task": "classification"}))
    told = harness.fake.last("chat.postEphemeral").args
    assert (told["channel"], told["user"]) == (CHANNEL, OWNER)
    assert "Your asset was not saved" in told["text"] and "already taken" in told["text"]


def test_when_the_modal_was_closed_a_successful_save_sends_nothing_more(harness, engine):
    harness.command("register model")
    form = harness.opened_view()
    harness.fake.on("views.update", lambda args: {"ok": False, "error": "not_found"})
    harness.interact(submission(form, {"name": "Churn model", "details.task": "classification"}))
    assert _slugs(engine) == ["churn-model"]
    assert not harness.fake.calls_to("chat.postEphemeral")  # the outbox's confirmation is on its way


def test_an_edit_whose_new_lineage_was_retired_comes_back_unsaved(harness, engine, bot_policy, now):
    dataset = make_asset(engine, policy=bot_policy, now=now, name="Churn events")
    model = make_asset(engine, policy=bot_policy, now=now, name="Churn model", kind="model")
    harness.command("edit churn-model")
    form = harness.opened_view()
    retire(engine, dataset, policy=bot_policy, now=now)
    shown = harness.submit(form, {"description": "Now with lineage", "edge:trained_on": [str(dataset.id)]})
    assert "churn-events is retired and cannot be linked" in problems_shown(shown)["edge:trained_on"]
    assert _block(shown, "description")["element"]["initial_value"] == "Now with lineage"
    assert reload(engine, model).description == ""
    assert "asset.updated" not in log_actions(engine)


def test_a_classification_of_a_retired_system_puts_the_questionnaire_back(harness, engine, bot_policy, now):
    system = make_asset(engine, policy=bot_policy, now=now, name="Loan approval", kind="system")
    harness.command("classify loan-approval", user=GOVERNANCE)
    form = harness.opened_view()
    retire(engine, system, policy=bot_policy, now=now)
    shown = harness.submit(form, {"annex_i_safety_component": "no", "annex_iii_areas": ["essential_services"]},
                           user=GOVERNANCE)
    assert "loan-approval is retired" in problems_shown(shown)["notes"]
    assert [o["value"] for o in _block(shown, "annex_iii_areas")["element"]["initial_options"]] == \
        ["essential_services"]
    with transaction(engine) as session:
        assert session.exec(select(Classification)).all() == []


def test_refilling_carries_every_kind_of_answer_and_drops_empty_ones():
    submitted = {
        "id": "V1", "hash": "h", "type": "modal", "callback_id": "cb", "private_metadata": "{}", "state": {"values": {
            "text": {"a": {"type": "plain_text_input", "value": "typed"}},
            "pick": {"a": {"type": "static_select", "selected_option": {"value": "x", "text": {"text": "X"}}}},
            "who": {"a": {"type": "users_select", "selected_user": "U0OWNER01"}},
            "ticks": {"a": {"type": "checkboxes", "selected_options": []}},
            "blank": {"a": {"type": "plain_text_input", "value": None}},
        }},
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "intro"}}] + [
            {"type": "input", "block_id": block_id, "element": {"type": "any", "action_id": "a",
                                                                "initial_value": "old", "initial_options": ["old"]}}
            for block_id in ("text", "pick", "who", "ticks", "blank")],
    }
    view = refilled_view(submitted, "Not saved: *why* <!here>", {"pick": "Pick <another>"})
    assert set(view) == {"type", "callback_id", "private_metadata", "blocks"}  # no id, hash or state
    assert view["blocks"][0]["text"]["text"] == ":warning: Not saved: *why* &lt;!here&gt;"
    assert view["blocks"][1]["text"]["text"] == "intro"
    assert problems_shown(view)["pick"] == ":warning: Pick &lt;another&gt;"
    elements = {b["block_id"]: b["element"] for b in view["blocks"] if b["type"] == "input"}
    assert elements["text"] == {"type": "any", "action_id": "a", "initial_value": "typed"}
    assert elements["pick"]["initial_option"]["value"] == "x"
    assert elements["who"]["initial_user"] == "U0OWNER01"
    assert "initial_options" not in elements["ticks"] and "initial_value" not in elements["blank"]  # cleared
