"""The risk questionnaire's pure rules: which tier the answers lead to, and why."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from workflows.enums import RiskTier
from workflows.risk import (
    AnnexIIIArea,
    ProhibitedPractice,
    RiskAnswers,
    TransparencyDuty,
    classify,
)

P = ProhibitedPractice
A3 = AnnexIIIArea
T = TransparencyDuty
WHY = "Narrow procedural task; a human reviews every output before it is used."

# (id, answers, tier, an article the reasons must mention)
CASES = [
    ("nothing", {}, RiskTier.MINIMAL, "No prohibited"),
    ("prohibited alone", {"prohibited_practices": [P.SOCIAL_SCORING]}, RiskTier.PROHIBITED, "Art. 5"),
    (
        "prohibited beats everything",
        {
            "prohibited_practices": [P.FACE_SCRAPING],
            "annex_i_safety_component": True,
            "annex_iii_areas": [A3.EMPLOYMENT],
            "transparency_duties": [T.DEEPFAKE],
        },
        RiskTier.PROHIBITED,
        "Art. 5",
    ),
    (
        "prohibited beats a written exemption",
        {
            "prohibited_practices": [P.MANIPULATION],
            "annex_iii_areas": [A3.EDUCATION],
            "art_6_3_exemption": True,
            "art_6_3_rationale": WHY,
        },
        RiskTier.PROHIBITED,
        "Art. 5",
    ),
    ("annex I", {"annex_i_safety_component": True}, RiskTier.HIGH, "Annex I"),
    (
        "annex I beats transparency",
        {"annex_i_safety_component": True, "transparency_duties": [T.INTERACTS_WITH_PEOPLE]},
        RiskTier.HIGH,
        "Annex I",
    ),
    (
        "annex I is not exempted by art. 6(3)",
        {"annex_i_safety_component": True, "art_6_3_exemption": True, "art_6_3_rationale": WHY},
        RiskTier.HIGH,
        "Annex I",
    ),
    ("annex III", {"annex_iii_areas": [A3.ESSENTIAL_SERVICES]}, RiskTier.HIGH, "Annex III"),
    (
        "annex III beats transparency",
        {"annex_iii_areas": [A3.BIOMETRICS], "transparency_duties": [T.SYNTHETIC_CONTENT]},
        RiskTier.HIGH,
        "Annex III",
    ),
    (
        "annex III exempted, no transparency",
        {"annex_iii_areas": [A3.EMPLOYMENT], "art_6_3_exemption": True, "art_6_3_rationale": WHY},
        RiskTier.MINIMAL,
        "Art. 6(3)",
    ),
    (
        "annex III exempted, with transparency",
        {
            "annex_iii_areas": [A3.EMPLOYMENT],
            "art_6_3_exemption": True,
            "art_6_3_rationale": WHY,
            "transparency_duties": [T.INTERACTS_WITH_PEOPLE],
        },
        RiskTier.LIMITED,
        "Art. 6(3)",
    ),
    (
        "exemption without annex III changes nothing",
        {"art_6_3_exemption": True, "art_6_3_rationale": WHY},
        RiskTier.MINIMAL,
        "No prohibited",
    ),
    ("transparency", {"transparency_duties": [T.INTERACTS_WITH_PEOPLE]}, RiskTier.LIMITED, "Art. 50"),
    (
        "several transparency duties",
        {"transparency_duties": [T.DEEPFAKE, T.PUBLIC_INTEREST_TEXT]},
        RiskTier.LIMITED,
        "Art. 50",
    ),
]


@pytest.mark.parametrize(("answers", "tier", "article"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_classify_picks_the_tier_and_cites_the_article(answers, tier, article):
    outcome = classify(RiskAnswers(**answers))
    assert outcome.tier == tier
    assert outcome.reasons, "a tier always comes with a reason"
    assert article in outcome.rationale


@pytest.mark.parametrize(
    ("answers", "not_mentioned"),
    [
        ({"prohibited_practices": [P.SOCIAL_SCORING]}, "Annex"),
        ({"annex_i_safety_component": True}, "Annex III"),
        ({"annex_iii_areas": [A3.MIGRATION]}, "Art. 6(3)"),
        ({"transparency_duties": [T.DEEPFAKE]}, "Annex"),
    ],
)
def test_reasons_do_not_cite_articles_that_did_not_decide(answers, not_mentioned):
    assert not_mentioned not in classify(RiskAnswers(**answers)).rationale


def test_the_exemption_reason_quotes_the_written_rationale():
    outcome = classify(RiskAnswers(annex_iii_areas=[A3.EDUCATION], art_6_3_exemption=True,
                                   art_6_3_rationale=f"  {WHY}  "))
    assert WHY in outcome.rationale
    assert "Education and vocational training" in outcome.rationale


def test_the_labels_of_what_was_chosen_appear_in_the_reasons():
    outcome = classify(RiskAnswers(prohibited_practices=[P.SOCIAL_SCORING, P.FACE_SCRAPING]))
    assert "Social scoring" in outcome.rationale
    assert "scraping of facial images" in outcome.rationale


@pytest.mark.parametrize(
    ("answers", "flags"),
    [
        ({"transparency_duties": [T.INTERACTS_WITH_PEOPLE, T.DEEPFAKE]}, ["interacts_with_people", "deepfake"]),
        ({"annex_iii_areas": [A3.JUSTICE], "transparency_duties": [T.SYNTHETIC_CONTENT]}, ["synthetic_content"]),
        ({"prohibited_practices": [P.MANIPULATION], "transparency_duties": [T.DEEPFAKE]}, ["deepfake"]),
        ({"annex_iii_areas": [A3.EDUCATION], "art_6_3_exemption": True, "art_6_3_rationale": WHY,
          "transparency_duties": [T.PUBLIC_INTEREST_TEXT]}, ["public_interest_text"]),
        ({}, []),
        ({"annex_i_safety_component": True}, []),
    ],
)
def test_transparency_flags_are_kept_whatever_the_tier(answers, flags):
    assert classify(RiskAnswers(**answers)).transparency_flags == flags


@pytest.mark.parametrize("rationale", ["", "   ", "\n\t"])
def test_an_exemption_without_a_written_rationale_is_rejected(rationale):
    with pytest.raises(ValidationError) as excinfo:
        RiskAnswers(annex_iii_areas=[A3.EMPLOYMENT], art_6_3_exemption=True, art_6_3_rationale=rationale)
    assert "Art. 6(3) exemption must be written down" in str(excinfo.value)


@pytest.mark.parametrize(
    "raw",
    [
        {"prohibited_practices": ["mind_control"]},
        {"annex_iii_areas": ["astrology"]},
        {"transparency_duties": ["vibes"]},
        {"unknown_question": True},
        {"art_6_3_rationale": "x" * 3001},
    ],
)
def test_answers_outside_the_questionnaire_are_rejected(raw):
    with pytest.raises(ValidationError):
        RiskAnswers.model_validate(raw)
