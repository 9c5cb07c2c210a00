"""An ML engineer registers a dataset and a model in Slack; later anyone finds it and reads its card."""

import json

import pytest

from tests.e2e.conftest import wait_for
from tests.factories import OTHER, OWNER

pytestmark = pytest.mark.e2e


def test_register_then_search_then_read_the_card(stack):
    fake = stack.fake

    # Register a dataset through the modal.
    assert stack.command("register dataset").status_code == 200
    form = wait_for(lambda: fake.views_opened(), what="the register modal")[-1]
    shown = stack.slack.save(form, {
        "name": "Churn events", "description": "Customer churn events <!channel>", "team": "Growth",
        "sensitivity": "restricted", "contains_personal_data": ["yes"], "location_uri": "s3://lake/churn",
    }, user=OWNER)
    assert shown["title"]["text"] == "Registered" and "`churn-events`" in json.dumps(shown)
    # The worker delivers the confirmation from the outbox, on real Redis.
    confirmation = wait_for(lambda: fake.calls_to("chat.postEphemeral"), what="the confirmation")[0]
    assert confirmation.args["user"] == OWNER and "churn-events" in json.dumps(confirmation.args)

    # Register a model trained on it, owned by a colleague, who is told by DM.
    stack.command("register model")
    form = wait_for(lambda: len(fake.views_opened()) >= 2 and fake.views_opened(), what="second modal")[-1]
    options = stack.interact({"type": "block_suggestion", "user": {"id": OWNER}, "team": {"id": "T0001"},
                              "api_app_id": "A0001", "action_id": "pick:trained_on", "block_id": "edge:trained_on",
                              "value": "churn", "view": {**form, "id": "V1"}}).json()["options"]
    assert [o["text"]["text"] for o in options] == ["Churn events (churn-events)"]
    stack.slack.save(form, {"name": "Churn model", "owner_id": OTHER, "details.task": "classification",
                            "edge:trained_on": [options[0]["value"]]}, user=OWNER)
    dm = wait_for(lambda: [m for m in fake.messages() if m["channel"] == f"D{OTHER}"], what="the owner's DM")[0]
    assert "named you its owner" in json.dumps(dm)

    # An hour later, anyone searches and opens the card.
    stack.command("search churn", user=OTHER)
    results = wait_for(lambda: [c for c in fake.calls_to("response_url") if c.name == "cmd-search"],
                       what="search results")[0]
    text = json.dumps(results.args, ensure_ascii=False)
    assert "churn-events" in text and "churn-model" in text
    stack.command("asset churn-model", user=OTHER)
    card = wait_for(lambda: [c for c in fake.calls_to("response_url") if c.name == "cmd-asset"],
                    what="the asset card")[0]
    text = json.dumps(card.args, ensure_ascii=False)
    assert "Trained on: `churn-events` (restricted · personal data" in text
    assert f"<@{OTHER}>" in text and ":x: Model card: missing" in text
    assert "<!channel>" not in json.dumps([c.args for c in fake.calls], ensure_ascii=False)
