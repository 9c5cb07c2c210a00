"""/steward classify: who may, the questionnaire, the stored tier and what inherits it."""

import json

from sqlmodel import select

from bot.views.forms import problems_shown
from tests.bot.conftest import GOVERNANCE, block_action, submission
from tests.factories import OTHER, OWNER, make_asset
from workflows.db import transaction
from workflows.models import Asset, Classification, OutboxMessage


def _system_with_lineage(engine, policy, now):
    data = make_asset(engine, policy=policy, now=now, name="Loan history", kind="dataset")
    model = make_asset(engine, policy=policy, now=now, name="Credit model", kind="model",
                       lineage={"trained_on": [data.id]})
    system = make_asset(engine, policy=policy, now=now, name="Loan approval", kind="system",
                        lineage={"uses": [model.id]})
    return data, model, system


def _tiers(engine):
    with transaction(engine) as session:
        return {a.slug: a.effective_tier for a in session.exec(select(Asset)).all()}


def test_governance_classifies_a_system_and_its_lineage_inherits_the_tier(harness, engine, bot_policy, now):
    _system_with_lineage(engine, bot_policy, now)
    harness.command("classify loan-approval", user=GOVERNANCE)
    view = harness.opened_view()
    assert view["callback_id"] == "asset_classify"
    shown = harness.submit(view, {"annex_i_safety_component": "no", "annex_iii_areas": ["essential_services"]},
                           user=GOVERNANCE)
    assert ":red_circle: High" in json.dumps(shown, ensure_ascii=False)
    assert "2 assets it uses now inherit this tier" in json.dumps(shown)
    assert _tiers(engine) == {"loan-history": "high", "credit-model": "high", "loan-approval": "high"}
    with transaction(engine) as session:
        record = session.exec(select(Classification)).one()
        dm = session.exec(select(OutboxMessage).where(OutboxMessage.method == "dm")).one()
    assert record.answers["annex_iii_areas"] == ["essential_services"] and "Annex III" in record.rationale
    assert dm.user == OWNER and dm.payload["template"] == "asset_classified_owner"


def test_a_prohibited_practice_wins_over_everything(harness, engine, bot_policy, now):
    _system_with_lineage(engine, bot_policy, now)
    harness.command("classify loan-approval")
    harness.interact(submission(harness.opened_view(), {
        "prohibited_practices": ["social_scoring"], "annex_i_safety_component": "yes",
        "transparency_duties": ["interacts_with_people"],
    }))
    assert _tiers(engine)["credit-model"] == "prohibited"


def test_an_exemption_without_a_written_reason_is_a_field_error(harness, engine, bot_policy, now):
    _system_with_lineage(engine, bot_policy, now)
    harness.command("classify loan-approval")
    body = json.loads(harness.interact(submission(harness.opened_view(), {
        "annex_i_safety_component": "no", "annex_iii_areas": ["employment"], "art_6_3_exemption": ["exempt"],
    })).body)
    assert body["response_action"] == "errors"
    assert "must be written down" in body["errors"]["art_6_3_rationale"]
    assert _tiers(engine)["loan-approval"] is None


def test_reclassifying_prefills_the_last_answers(harness, engine, bot_policy, now):
    _system_with_lineage(engine, bot_policy, now)
    harness.command("classify loan-approval")
    harness.interact(submission(harness.opened_view(), {"annex_i_safety_component": "no",
                                                        "transparency_duties": ["synthetic_content"]}))
    assert _tiers(engine)["loan-approval"] == "limited"
    harness.command("classify loan-approval")
    blocks = {b.get("block_id"): b for b in harness.opened_view()["blocks"]}
    assert blocks["transparency_duties"]["element"]["initial_options"][0]["value"] == "synthetic_content"
    assert blocks["annex_i_safety_component"]["element"]["initial_option"]["value"] == "no"


def test_only_owner_governance_or_admin_may_classify(harness, engine, bot_policy, now):
    _system_with_lineage(engine, bot_policy, now)
    harness.command("classify loan-approval", user=OTHER)
    assert "Only the owner of loan-approval, governance or a Steward admin" in harness.last_reply_text()
    assert not harness.fake.calls_to("views.open")


def test_a_forged_classify_submission_is_refused(harness, engine, bot_policy, now):
    _system_with_lineage(engine, bot_policy, now)
    harness.command("classify loan-approval", user=OWNER)
    shown = harness.submit(harness.opened_view(), {"annex_i_safety_component": "yes"}, user=OTHER)
    assert "Only the owner of loan-approval" in problems_shown(shown)["notes"]
    assert _tiers(engine)["loan-approval"] is None


def test_only_systems_are_classified(harness, engine, bot_policy, now):
    _system_with_lineage(engine, bot_policy, now)
    harness.command("classify credit-model")
    assert "Only AI systems are classified" in harness.last_reply_text()


def test_the_classify_button_on_a_card_opens_the_questionnaire(harness, engine, bot_policy, now):
    *_, system = _system_with_lineage(engine, bot_policy, now)
    harness.interact(block_action("asset_classify_open", str(system.id),
                                  response_url=harness.fake.response_url("card")))
    assert harness.opened_view()["callback_id"] == "asset_classify"
