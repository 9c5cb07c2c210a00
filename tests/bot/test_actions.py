"""Buttons: View, Retire, Register from App Home; and the App Home tab itself."""

import json
from datetime import timedelta


from tests.bot.conftest import block_action
from tests.factories import OTHER, OWNER, make_asset
from workflows.db import transaction
from workflows.models import Asset


def test_view_button_shows_the_card_in_the_conversation(harness, engine, bot_policy, now):
    asset = make_asset(engine, policy=bot_policy, now=now, name="Churn events")
    harness.interact(block_action("asset_show", str(asset.id), response_url=harness.fake.response_url("list")))
    reply = harness.replies()[-1]
    assert reply["replace_original"] is False and "churn-events" in json.dumps(reply)


def test_view_button_from_app_home_opens_a_modal(harness, engine, bot_policy, now):
    asset = make_asset(engine, policy=bot_policy, now=now, name="Churn events")
    harness.interact(block_action("asset_show", str(asset.id)))
    view = harness.fake.last("views.open").args["view"]
    assert view["type"] == "modal" and "churn-events" in json.dumps(view)


def test_a_forged_button_value_gets_a_clear_answer(harness):
    harness.interact(block_action("asset_show", "999", response_url=harness.fake.response_url("x")))
    assert "No asset has id 999" in harness.last_reply_text()
    harness.interact(block_action("asset_show", "drop table", response_url=harness.fake.response_url("x")))
    assert "no longer points at an asset" in harness.last_reply_text()


def test_the_owner_retires_an_asset_and_the_card_is_redrawn(harness, engine, bot_policy, now):
    asset = make_asset(engine, policy=bot_policy, now=now, name="Old data")
    harness.interact(block_action("asset_retire", str(asset.id), response_url=harness.fake.response_url("card")))
    reply = harness.replies()[-1]
    assert reply["replace_original"] is True and "_(retired)_" in json.dumps(reply)
    with transaction(engine) as session:
        stored = session.get(Asset, asset.id)
    assert stored.status == "retired" and stored.next_review_due is None


def test_someone_else_cannot_retire(harness, engine, bot_policy, now):
    asset = make_asset(engine, policy=bot_policy, now=now, name="Old data")
    harness.interact(block_action("asset_retire", str(asset.id), user=OTHER,
                                  response_url=harness.fake.response_url("card")))
    assert "Only the owner of old-data" in harness.last_reply_text()
    with transaction(engine) as session:
        assert session.get(Asset, asset.id).status == "active"


def test_app_home_lists_my_assets_and_reviews_due(harness, engine, bot_policy, now):
    due_soon = make_asset(engine, policy=bot_policy, now=now - timedelta(days=400), name="Stale data")
    make_asset(engine, policy=bot_policy, now=now, name="Fresh data")
    make_asset(engine, policy=bot_policy, now=now, name="Not mine", owner_id=OTHER)
    harness.event({"type": "app_home_opened", "user": OWNER, "tab": "home", "channel": "D1"})
    home = harness.fake.last("views.publish").args
    text = json.dumps(home["view"])
    assert home["user_id"] == OWNER and home["view"]["type"] == "home"
    assert "*Reviews due* (1)" in text and "overdue since" in text
    assert text.index("stale-data") < text.index("*Your assets* (2)")
    assert "fresh-data" in text and "not-mine" not in text
    assert due_soon.next_review_due < now


def test_register_button_on_home_opens_the_kind_picker(harness):
    harness.interact(block_action("asset_register_open", "home"))
    assert harness.fake.last("views.open").args["view"]["callback_id"] == "asset_register"


def test_the_messages_tab_does_not_redraw_home(harness):
    harness.event({"type": "app_home_opened", "user": OWNER, "tab": "messages", "channel": "D1"})
    assert not harness.fake.calls_to("views.publish")
