"""/steward subcommands through signed requests: help, asset, search, mine, and bad input."""

import json

from tests.bot.conftest import CHANNEL
from tests.factories import OTHER, OWNER, make_asset


def test_help_and_unknown_subcommands_list_the_commands(harness):
    harness.command("")
    assert "/steward register" in harness.last_reply_text()
    harness.command("frobnicate")
    reply = harness.last_reply_text()
    assert "I don't know `frobnicate`" in reply and "/steward search" in reply


def test_asset_card_shows_owner_tier_lineage_and_docs(harness, engine, bot_policy, now):
    data = make_asset(engine, policy=bot_policy, now=now, kind="dataset", name="Loan history",
                      sensitivity="restricted", contains_personal_data=True, owner_id=OTHER)
    model = make_asset(engine, policy=bot_policy, now=now, kind="model", name="Fraud scorer",
                       lineage={"trained_on": [data.id]})
    make_asset(engine, policy=bot_policy, now=now, kind="system", name="Loan approval",
               lineage={"uses": [model.id]})
    harness.command("asset fraud-scorer")
    reply = harness.replies()[-1]
    text = json.dumps(reply, ensure_ascii=False)
    assert reply["response_type"] == "ephemeral"
    assert f"<@{OWNER}>" in text
    assert "Trained on: `loan-history` (restricted · personal data" in text
    assert "Used by: `loan-approval`" in text
    assert ":x: Model card: missing" in text
    assert "used by unclassified `loan-approval`" in text
    assert len(reply["blocks"]) <= 50


def test_the_owner_sees_edit_and_others_do_not(harness, engine, bot_policy, now):
    make_asset(engine, policy=bot_policy, now=now, name="Churn events")
    harness.command("asset churn-events", user=OWNER)
    owner_view = json.dumps(harness.replies()[-1], ensure_ascii=False)
    harness.command("asset churn-events", user=OTHER)
    other_view = json.dumps(harness.replies()[-1], ensure_ascii=False)
    assert "asset_edit_open" in owner_view and "asset_retire" in owner_view
    assert "asset_edit_open" not in other_view and "asset_retire" not in other_view


def test_an_unknown_slug_suggests_the_closest(harness, engine, bot_policy, now):
    make_asset(engine, policy=bot_policy, now=now, kind="model", name="Fraud scorer")
    harness.command("asset fraud-scorr")
    reply = harness.last_reply_text()
    assert "No asset is called `fraud-scorr`" in reply and "`fraud-scorer`" in reply


def test_search_returns_matches_best_first(harness, engine, bot_policy, now):
    make_asset(engine, policy=bot_policy, now=now, name="Churn events")
    make_asset(engine, policy=bot_policy, now=now, name="Customer table", description="feeds the churn model")
    make_asset(engine, policy=bot_policy, now=now, name="Payments")
    harness.command("search churn")
    reply = harness.last_reply_text()
    assert "*2* best matches for *churn*" in reply
    assert reply.index("churn-events") < reply.index("customer-table")
    assert "payments" not in reply


def test_search_with_no_match_says_so(harness):
    harness.command("search nothing-like-this")
    assert "Nothing matches" in harness.last_reply_text()


def test_mine_lists_only_my_assets(harness, engine, bot_policy, now):
    make_asset(engine, policy=bot_policy, now=now, name="Mine one")
    make_asset(engine, policy=bot_policy, now=now, name="Theirs", owner_id=OTHER)
    harness.command("mine", user=OWNER)
    reply = harness.last_reply_text()
    assert "mine-one" in reply and "theirs" not in reply


def test_user_text_is_escaped_so_it_pings_no_one(harness, engine, bot_policy, now):
    make_asset(engine, policy=bot_policy, now=now, name="Noisy", description="<!channel> look & see <@U0OTHER1>")
    harness.command("asset noisy")
    reply = harness.last_reply_text()
    assert "<!channel>" not in reply
    assert "&lt;!channel&gt; look &amp; see &lt;@U0OTHER1&gt;" in reply
    harness.command("search <!channel>")
    assert "<!channel>" not in harness.last_reply_text()


def test_register_with_an_unknown_kind_explains(harness):
    harness.command("register spaceship")
    assert "`spaceship` is not a kind of asset" in harness.last_reply_text()
    assert not harness.fake.calls_to("views.open")


def test_commands_with_missing_arguments_ask_for_them(harness):
    for text, expected in (("asset", "Which asset?"), ("search", "Search for what?"), ("classify", "Which system?")):
        harness.command(text)
        assert expected in harness.last_reply_text()


def test_the_origin_channel_travels_with_the_modal(harness):
    harness.command("register dataset", user=OWNER, channel=CHANNEL)
    view = harness.opened_view()
    assert json.loads(view["private_metadata"]) == {"kind": "dataset", "channel": CHANNEL}
