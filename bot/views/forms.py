"""The register/edit asset modal: a kind picker, then only the fields that make sense for the kind."""

from __future__ import annotations

from typing import Any

from workflows.details import DETAILS_BY_KIND
from workflows.enums import AssetKind, AssetStatus, DocType, EdgeType, Environment, Sensitivity
from workflows.lineage import FORM_EDGES
from workflows.models import Asset

from bot.ids import Action, Block as B, Callback, detail_block, edge_block, picker_action
from bot.views.assets import asset_line
from bot.views.common import Block, actions, button, context, escape, option, plain, section

LONG_FIELDS = {"intended_use", "collection_process", "known_bias", "metrics", "intended_purpose",
               "affected_people"}
DETAIL_HINTS = {
    "intended_use": "What it is for, and what it must not be used for.",
    "collection_process": "How and where the data was collected, and under what consent.",
    "known_bias": "Known gaps, skews or under-represented groups.",
    "size": "For example: 1.2M rows, 40 GB.",
    "task": "For example: binary classification, summarisation.",
    "base_model": "The model this one was fine-tuned from, if it is not in the inventory.",
    "metrics": "For example: AUC 0.91 on holdout-2026Q1.",
    "intended_purpose": "What the system decides or does, and for whom.",
    "affected_people": "Who is affected by its outputs: applicants, employees, customers…",
}
EDGE_LABELS = {
    EdgeType.TRAINED_ON: "Trained on", EdgeType.TESTED_ON: "Tested on", EdgeType.DERIVED_FROM: "Derived from",
    EdgeType.USES: "Uses", EdgeType.RUNS_ON: "Runs on", EdgeType.DOCUMENTS: "Documents",
}
MODAL_TITLE = {Callback.REGISTER: "Register an asset", Callback.EDIT: "Edit asset"}


def kind_options() -> list[dict[str, Any]]:
    """Options for choosing an asset kind."""
    return [option(kind.label, kind.value) for kind in AssetKind]


def kind_picker_view(*, metadata: str) -> dict[str, Any]:
    """The first step of registration: what kind of asset is it?"""
    return {
        "type": "modal",
        "callback_id": Callback.REGISTER,
        "title": plain(MODAL_TITLE[Callback.REGISTER], 24),
        "close": plain("Cancel", 24),
        "private_metadata": metadata,
        "blocks": [
            section("What kind of asset are you registering? Steward then asks only for what fits it.",
                    block_id=B.KIND_PICKER,
                    accessory={"type": "static_select", "action_id": Action.PICK_KIND,
                               "placeholder": plain("Choose a kind"), "options": kind_options()}),
        ],
    }


def asset_form_view(*, kind: AssetKind, metadata: str, owner_id: str, asset: Asset | None = None,
                    lineage: dict[EdgeType, list[Asset]] | None = None) -> dict[str, Any]:
    """The asset form for `kind`, empty for registration or filled from `asset` for editing."""
    callback = Callback.EDIT if asset else Callback.REGISTER
    values = asset.model_dump() if asset else {}
    details = asset.details if asset else {}
    blocks: list[Block] = [
        _text_input(B.NAME, "Name", values.get("name", ""), max_length=150,
                    placeholder="Fraud scorer v3"),
        _text_input(B.SLUG, "Slug", values.get("slug", ""), max_length=64, optional=asset is None,
                    hint="Lowercase words joined by hyphens. Leave blank to derive it from the name."),
        _text_input(B.DESCRIPTION, "Description", values.get("description", ""), multiline=True,
                    max_length=3000, optional=True),
        _input(B.OWNER, "Owner", {"type": "users_select", "action_id": Action.VALUE,
                                  "initial_user": values.get("owner_id", owner_id)}),
        _text_input(B.TEAM, "Team", values.get("team", ""), max_length=100, optional=True),
        _text_input(B.LOCATION, "Location", values.get("location_uri", ""), max_length=500, optional=True,
                    placeholder="s3://bucket/path, https://…, hf://org/model"),
        _text_input(B.VERSION, "Version", values.get("version", ""), max_length=64, optional=True),
        _text_input(B.LICENSE, "License", values.get("license", ""), max_length=100, optional=True,
                    placeholder="Apache-2.0, proprietary…"),
        _select(B.SENSITIVITY, "Sensitivity", [option(s.value.capitalize(), s.value) for s in Sensitivity],
                values.get("sensitivity", Sensitivity.INTERNAL)),
        _personal_data_input(bool(values.get("contains_personal_data"))),
    ]
    if asset:
        statuses = [s for s in AssetStatus if s != AssetStatus.RETIRED]
        blocks.append(_select(B.STATUS, "Status", [option(s.value.capitalize(), s.value) for s in statuses],
                              asset.status if asset.status in statuses else AssetStatus.ACTIVE))
    blocks += _detail_inputs(kind, details)
    blocks += _lineage_inputs(kind, lineage or {})
    return {
        "type": "modal",
        "callback_id": callback,
        "title": plain(MODAL_TITLE[callback], 24),
        "submit": plain("Save" if asset else "Register", 24),
        "close": plain("Cancel", 24),
        "private_metadata": metadata,
        "blocks": blocks,
    }


def asset_option(asset: Asset) -> dict[str, Any]:
    """A picker option for an asset; the value is its id."""
    return option(f"{asset.name} ({asset.slug})", str(asset.id), asset.kind.label)


def _detail_inputs(kind: AssetKind, details: dict[str, Any]) -> list[Block]:
    blocks = []
    for name, field in DETAILS_BY_KIND[kind].model_fields.items():
        label = name.replace("_", " ").capitalize()
        current = details.get(name) or ""
        if name == "doc_type":
            blocks.append(_select(detail_block(name), "Document type",
                                  [option(d.label, d.value) for d in DocType], current or None))
        elif name == "environment":
            blocks.append(_select(detail_block(name), "Environment",
                                  [option(e.value.capitalize(), e.value) for e in Environment],
                                  current or None, optional=True))
        else:
            blocks.append(_text_input(
                detail_block(name), "URL" if name == "url" else label, str(current),
                multiline=name in LONG_FIELDS, max_length=3000 if name in LONG_FIELDS else 500,
                optional=not field.is_required(), hint=DETAIL_HINTS.get(name)))
    return blocks


def _lineage_inputs(kind: AssetKind, lineage: dict[EdgeType, list[Asset]]) -> list[Block]:
    blocks = []
    for edge_type, target_kinds in FORM_EDGES[kind].items():
        kinds = ", ".join(sorted(k.label.lower() for k in target_kinds))
        element: dict[str, Any] = {
            "type": "multi_external_select", "action_id": picker_action(edge_type),
            "placeholder": plain(f"Search {kinds}"[:150]), "min_query_length": 0,
        }
        current = lineage.get(edge_type) or []
        if current:
            element["initial_options"] = [asset_option(a) for a in current]
        blocks.append(_input(edge_block(edge_type), EDGE_LABELS[edge_type], element, optional=True))
    return blocks


def _personal_data_input(checked: bool) -> Block:
    yes = option("Contains personal data", "yes", "Names, contact details, IDs, biometrics…")
    element: dict[str, Any] = {"type": "checkboxes", "action_id": Action.VALUE, "options": [yes]}
    if checked:
        element["initial_options"] = [yes]
    return _input(B.PERSONAL_DATA, "Personal data", element, optional=True)


def _text_input(block_id: str, label: str, initial: str, *, multiline: bool = False, max_length: int = 150,
                optional: bool = False, placeholder: str | None = None, hint: str | None = None) -> Block:
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": Action.VALUE, "multiline": multiline,
                               "max_length": max_length}
    if initial:
        element["initial_value"] = initial[:max_length]  # Slack refuses a form whose value is over the limit
    if placeholder:
        element["placeholder"] = plain(placeholder)
    return _input(block_id, label, element, optional=optional, hint=hint)


def _select(block_id: str, label: str, options: list[dict[str, Any]], initial: str | None, *,
            optional: bool = False) -> Block:
    element: dict[str, Any] = {"type": "static_select", "action_id": Action.VALUE, "options": options}
    chosen = [o for o in options if initial is not None and o["value"] == str(initial)]
    if chosen:
        element["initial_option"] = chosen[0]
    return _input(block_id, label, element, optional=optional)


def _input(block_id: str, label: str, element: dict[str, Any], *, optional: bool = False,
           hint: str | None = None) -> Block:
    block: Block = {"type": "input", "block_id": block_id, "label": plain(label, 2000), "element": element,
                    "optional": optional}
    if hint:
        block["hint"] = plain(hint, 2000)
    return block


# What a submitted element reports → what a new view's element starts with.
_STATE_TO_INITIAL = {"value": "initial_value", "selected_option": "initial_option",
                     "selected_options": "initial_options", "selected_user": "initial_user",
                     "selected_users": "initial_users", "selected_conversation": "initial_conversation",
                     "selected_date": "initial_date", "selected_time": "initial_time"}
PROBLEM = "problem:"  # block ids of the problems a form given back shows
_VIEW_KEYS = ("type", "callback_id", "title", "submit", "close", "private_metadata", "clear_on_close",
              "notify_on_close", "submit_disabled")


def saving_view(submitted: dict[str, Any], doing: str, name: str = "") -> dict[str, Any]:
    """What a submitted form turns into at once, while it is saved after the ack: "Saving *name*…". It keeps
    the form's title and metadata, and has no submit button."""
    what = f"{doing} *{escape(name)}*…" if name else f"{doing}…"
    return {"type": "modal", "callback_id": submitted.get("callback_id", ""), "title": submitted["title"],
            "close": plain("Close", 24), "private_metadata": submitted.get("private_metadata", ""),
            "blocks": [section(f":hourglass_flowing_sand: {what}")]}


def saved_view(asset: Asset, *, registered: bool) -> dict[str, Any]:
    """What the form shows once the asset is saved."""
    verb = "Registered" if registered else "Saved"
    return {"type": "modal", "title": plain(verb, 24), "close": plain("Done", 24),
            "blocks": [section(f":white_check_mark: {verb} {asset_line(asset)}"),
                       actions(button("View", Action.SHOW_ASSET, str(asset.id)))]}


def refilled_view(submitted: dict[str, Any], problem: str, errors: dict[str, str] | None = None) -> dict[str, Any]:
    """The submitted form again, holding what the person entered, with `problem` above it and each of `errors`
    ({block_id: text}) under its block: how a save that failed after its ack gives the form back, losing
    nothing. Texts are plain; they are escaped here. The problems of an earlier try are dropped."""
    state = submitted.get("state", {}).get("values", {})
    errors = errors or {}
    blocks: list[Block] = [section(f":warning: {escape(problem)}", block_id=f"{PROBLEM}top")]
    for block in submitted.get("blocks", []):
        if str(block.get("block_id", "")).startswith(PROBLEM):
            continue
        block = dict(block)
        entered = next(iter(state.get(block.get("block_id"), {}).values()), None)
        if block.get("type") == "input" and entered is not None:
            element = {k: v for k, v in block["element"].items() if not k.startswith("initial_")}
            for key, initial in _STATE_TO_INITIAL.items():
                if entered.get(key) not in (None, "", []):  # Slack refuses empty initial values
                    element[initial] = entered[key]
            if isinstance(element.get("initial_value"), str) and "max_length" in element:
                # Slack keeps typed text within the limit; a forged submission need not, and Slack would
                # refuse the whole view.
                element["initial_value"] = element["initial_value"][:element["max_length"]]
            block["element"] = element
        blocks.append(block)
        if block.get("block_id") in errors:
            blocks.append({**context(f":warning: {escape(errors[block['block_id']])}"),
                           "block_id": f"{PROBLEM}{block['block_id']}"})
    return {**{k: submitted[k] for k in _VIEW_KEYS if k in submitted}, "blocks": blocks}


def problems_shown(view: dict[str, Any]) -> dict[str, str]:
    """The problems a form given back by `refilled_view` shows: {block_id: the text under it}, and "" for
    the line above the form. Empty for any other view."""
    problems = {}
    for block in view.get("blocks", []):
        block_id = str(block.get("block_id", ""))
        if block_id.startswith(PROBLEM):
            text = block["text"]["text"] if block["type"] == "section" else block["elements"][0]["text"]
            problems["" if block_id == f"{PROBLEM}top" else block_id.removeprefix(PROBLEM)] = text
    return problems
