"""The EU AI Act questionnaire modal and its result screen."""

from __future__ import annotations

from typing import Any

from workflows.models import Asset, Classification
from workflows.risk import LABELS, AnnexIIIArea, ProhibitedPractice, RiskOutcome, TransparencyDuty

from bot.ids import Action, Callback, RiskBlock
from bot.views.common import Block, context, escape, option, plain, section, tier_badge

YES, NO = "yes", "no"
EXEMPTION = "exempt"
TEXT_MAX = 3000


def classify_view(*, asset: Asset, metadata: str, previous: Classification | None = None) -> dict[str, Any]:
    """The questionnaire, in the order the Act applies it, prefilled from the last answers."""
    answers = previous.answers if previous else {}
    blocks: list[Block] = [
        section(f"Classifying *{escape(asset.name)}* (`{asset.slug}`). Steward applies the tests in the order "
                "of the EU AI Act: prohibited practices, then Annex I, then Annex III, then Art. 50."),
        _checkboxes(RiskBlock.PROHIBITED, "1. Does it use any prohibited practice (Art. 5)?",
                    list(ProhibitedPractice), answers.get(RiskBlock.PROHIBITED, []),
                    hint="Tick none if none apply. Any tick makes the system prohibited."),
        _yes_no(RiskBlock.ANNEX_I, "2. Is it a safety component of a product regulated under Annex I?",
                answers.get(RiskBlock.ANNEX_I)),
        _checkboxes(RiskBlock.ANNEX_III, "3. Is it used in any Annex III area?", list(AnnexIIIArea),
                    answers.get(RiskBlock.ANNEX_III, [])),
        _exemption(bool(answers.get(RiskBlock.EXEMPTION))),
        _text(RiskBlock.EXEMPTION_RATIONALE, "Art. 6(3) exemption: why there is no significant risk",
              answers.get(RiskBlock.EXEMPTION_RATIONALE, ""),
              hint="Required if you claim the exemption: e.g. it only performs a narrow procedural task."),
        _checkboxes(RiskBlock.TRANSPARENCY, "4. Which transparency duties (Art. 50) apply?",
                    list(TransparencyDuty), answers.get(RiskBlock.TRANSPARENCY, [])),
        _text(RiskBlock.NOTES, "Notes for reviewers", answers.get(RiskBlock.NOTES, "")),
    ]
    return {
        "type": "modal", "callback_id": Callback.CLASSIFY, "title": plain("Classify risk", 24),
        "submit": plain("Classify", 24), "close": plain("Cancel", 24), "private_metadata": metadata,
        "blocks": blocks,
    }


def classification_result_view(*, asset: Asset, outcome: RiskOutcome, inherited: int) -> dict[str, Any]:
    """What the modal turns into after a successful classification."""
    blocks: list[Block] = [
        section(f"*{escape(asset.name)}* is now {tier_badge(outcome.tier)}.\n{escape(outcome.rationale)}"),
    ]
    if inherited:
        blocks.append(context(f"{inherited} asset{'s' if inherited != 1 else ''} it uses now inherit this tier "
                              "unless a stricter system also uses them."))
    return {"type": "modal", "title": plain("Classified", 24), "close": plain("Done", 24), "blocks": blocks}


def _checkboxes(block_id: str, label: str, choices: list, initial: list[str], *, hint: str | None = None) -> Block:
    options = [option(LABELS[c], c.value) for c in choices]
    element: dict[str, Any] = {"type": "checkboxes", "action_id": Action.VALUE, "options": options}
    chosen = [o for o in options if o["value"] in initial]
    if chosen:
        element["initial_options"] = chosen
    block: Block = {"type": "input", "block_id": block_id, "label": plain(label, 2000), "optional": True,
                    "element": element}
    if hint:
        block["hint"] = plain(hint, 2000)
    return block


def _yes_no(block_id: str, label: str, initial: bool | None) -> Block:
    options = [option("Yes", YES), option("No", NO)]
    element: dict[str, Any] = {"type": "radio_buttons", "action_id": Action.VALUE, "options": options}
    if initial is not None:
        element["initial_option"] = options[0] if initial else options[1]
    return {"type": "input", "block_id": block_id, "label": plain(label, 2000), "element": element}


def _exemption(initial: bool) -> Block:
    exempt = option("A written Art. 6(3) exemption applies", EXEMPTION,
                    "Only narrow, preparatory or procedural tasks")
    element: dict[str, Any] = {"type": "checkboxes", "action_id": Action.VALUE, "options": [exempt]}
    if initial:
        element["initial_options"] = [exempt]
    return {"type": "input", "block_id": RiskBlock.EXEMPTION, "label": plain("Annex III exemption", 2000),
            "optional": True, "element": element}


def _text(block_id: str, label: str, initial: str, *, hint: str | None = None) -> Block:
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": Action.VALUE, "multiline": True,
                               "max_length": TEXT_MAX}
    if initial:
        element["initial_value"] = str(initial)[:TEXT_MAX]  # Slack refuses a form whose value is over the limit
    block: Block = {"type": "input", "block_id": block_id, "label": plain(label, 2000), "optional": True,
                    "element": element}
    if hint:
        block["hint"] = plain(hint, 2000)
    return block
