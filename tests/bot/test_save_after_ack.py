"""Forms are checked before their ack and saved after it: a save that then loses a race gives the form back,
holding everything the person entered, and saves nothing."""

import json

import pytest
from sqlmodel import select

from bot.listeners import views as view_listeners
from bot.views.forms import refilled_view
from tests.bot.conftest import CHANNEL, GOVERNANCE, submission
from tests.factories import OWNER, log_actions, make_asset, reload, retire
from workflows.db import transaction
from workflows.models import Asset, Classification


@pytest.fixture
def racing(monkeypatch):
    """Run `then()` right after the listener's pre-ack check has read the database: a rival's write that lands
    between the check and the save."""
    def arm(then):
        real = view_listeners.read

        def read_then_race(ctx, fn):
            result = real(ctx, fn)
            then()
            return result
        monkeypatch.setattr(view_listeners, "read", read_then_race)
    return arm


def _block(view, block_id):
    return next(b for b in view["blocks"] if b.get("block_id") == block_id)


def _after(view, block_id):
    """The text of the block right under `block_id` (where a refilled form puts that field's problem)."""
    index = next(i for i, b in enumerate(view["blocks"]) if b.get("block_id") == block_id)
    return json.dumps(view["blocks"][index + 1])


def _slugs(engine):
    with transaction(engine) as session:
        return sorted(session.exec(select(Asset.slug)).all())


def test_a_registration_that_loses_its_slug_to_a_race_gets_its_form_back(harness, engine, bot_policy, now, racing):
    dataset = make_asset(engine, policy=bot_policy, now=now, name="Churn events")
    harness.command("register model")
    form = harness.opened_view()
    racing(lambda: make_asset(engine, policy=bot_policy, now=now, name="Churn model", kind="model"))
    response = harness.interact(submission(form, {
        "name": "Churn model", "description": "Predicts churn", "team": "Growth", "sensitivity": "confidential",
        "details.task": "classification", "edge:trained_on": [str(dataset.id)],
    }))
    assert response.status == 200 and response.body == ""  # the check passed, so the form was acked
    reopened = harness.fake.last("views.open").args
    assert reopened["trigger_id"] == "1.2.3"
    again = reopened["view"]
    assert again["callback_id"] == form["callback_id"] and again["private_metadata"] == form["private_metadata"]
    assert "Not saved" in again["blocks"][0]["text"]["text"] and "already taken" in _after(again, "slug")
    assert _block(again, "name")["element"]["initial_value"] == "Churn model"
    assert _block(again, "description")["element"]["initial_value"] == "Predicts churn"
    assert _block(again, "sensitivity")["element"]["initial_option"]["value"] == "confidential"
    assert [o["value"] for o in _block(again, "edge:trained_on")["element"]["initial_options"]] == [str(dataset.id)]
    assert _slugs(engine) == ["churn-events", "churn-model"]  # only the rival's
    assert log_actions(engine).count("asset.registered") == 2  # the dataset and the rival; nothing of ours


def test_when_the_form_cannot_come_back_the_person_is_told_where_they_were(harness, engine, bot_policy, now, racing):
    harness.command("register model")
    form = harness.opened_view()
    racing(lambda: make_asset(engine, policy=bot_policy, now=now, name="Churn model", kind="model"))
    payload = submission(form, {"name": "Churn model", "details.task": "classification"})
    del payload["trigger_id"]  # no trigger to open the form again with
    assert harness.interact(payload).body == ""
    told = harness.fake.last("chat.postEphemeral").args
    assert (told["channel"], told["user"]) == (CHANNEL, OWNER)
    assert "Your asset was not saved" in told["text"] and "already taken" in told["text"]
    assert _slugs(engine) == ["churn-model"]


def test_an_edit_whose_new_lineage_is_retired_meanwhile_comes_back_unsaved(harness, engine, bot_policy, now,
                                                                           racing):
    dataset = make_asset(engine, policy=bot_policy, now=now, name="Churn events")
    model = make_asset(engine, policy=bot_policy, now=now, name="Churn model", kind="model")
    harness.command("edit churn-model")
    form = harness.opened_view()
    racing(lambda: retire(engine, dataset, policy=bot_policy, now=now))
    response = harness.interact(submission(form, {"description": "Now with lineage",
                                                  "edge:trained_on": [str(dataset.id)]}))
    assert response.body == ""
    again = harness.fake.last("views.open").args["view"]
    assert "Some lineage needs fixing" in again["blocks"][0]["text"]["text"]
    assert "churn-events is retired and cannot be linked" in _after(again, "edge:trained_on")
    assert _block(again, "description")["element"]["initial_value"] == "Now with lineage"
    assert reload(engine, model).description == ""
    assert "asset.updated" not in log_actions(engine)


def test_a_classification_whose_system_is_retired_meanwhile_puts_the_questionnaire_back(harness, engine, bot_policy,
                                                                                        now, racing):
    system = make_asset(engine, policy=bot_policy, now=now, name="Loan approval", kind="system")
    harness.command("classify loan-approval", user=GOVERNANCE)
    form = harness.opened_view()
    racing(lambda: retire(engine, system, policy=bot_policy, now=now))
    response = harness.interact(submission(form, {"annex_i_safety_component": "no",
                                                  "annex_iii_areas": ["essential_services"]}, user=GOVERNANCE))
    assert json.loads(response.body)["response_action"] == "update"  # the outcome, shown in the ack
    update = harness.fake.last("views.update").args
    assert update["view_id"] == "V0SUBMIT1"  # the same modal, now the questionnaire again
    assert "loan-approval is retired" in update["view"]["blocks"][0]["text"]["text"]
    areas = _block(update["view"], "annex_iii_areas")["element"]["initial_options"]
    assert [o["value"] for o in areas] == ["essential_services"]
    with transaction(engine) as session:
        assert session.exec(select(Classification)).all() == []


def test_a_retired_system_is_refused_in_the_ack(harness, engine, bot_policy, now):
    system = make_asset(engine, policy=bot_policy, now=now, name="Loan approval", kind="system")
    harness.command("classify loan-approval", user=GOVERNANCE)
    form = harness.opened_view()
    retire(engine, system, policy=bot_policy, now=now)
    body = json.loads(harness.interact(submission(form, {"annex_i_safety_component": "no"}, user=GOVERNANCE)).body)
    assert body["response_action"] == "errors" and "retired" in json.dumps(body["errors"])


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
    assert "Pick &lt;another&gt;" in _after(view, "pick")
    elements = {b["block_id"]: b["element"] for b in view["blocks"] if b.get("block_id")}
    assert elements["text"] == {"type": "any", "action_id": "a", "initial_value": "typed"}
    assert elements["pick"]["initial_option"]["value"] == "x"
    assert elements["who"]["initial_user"] == "U0OWNER01"
    assert "initial_options" not in elements["ticks"] and "initial_value" not in elements["blank"]  # cleared
