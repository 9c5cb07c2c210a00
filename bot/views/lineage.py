"""Lineage views: the `/steward lineage` tree, and the impact notice owners get when data they built on
turns personal or restricted. Pure builders: objects in, blocks out, within Slack's limits."""

from __future__ import annotations

from typing import Any

from workflows.enums import AssetKind, EdgeType
from workflows.impact import PERSONAL_DATA, RESTRICTED, Affected
from workflows.lineage_tree import Direction, LineageTree, TreeNode
from workflows.models import Asset, Grant

from bot.ids import Action
from bot.views.common import (
    KIND_EMOJI, MESSAGE_BLOCK_LIMIT, TEXT_LIMIT, Block, actions, button, clip, clip_markup, context, escape, section,
    status_suffix, tier_badge, user,
)

INDENT = "\u2003\u2003"  # em spaces: Slack keeps them where it would collapse ordinary spaces
NAME_CLIP, LICENSE_CLIP = 60, 40
IMPACT_ASSETS_SHOWN, IMPACT_GRANTS_SHOWN = 20, 8
_EXPLAIN = {
    Direction.UP: "what it was built from: trained on, tested on, derived from, uses, runs on",
    Direction.DOWN: "what depends on it: what was trained, tested or derived from it, uses it or runs on it",
}
_EMPTY = {
    Direction.UP: "_Nothing recorded upstream._ Edit the asset to say what it was trained on or uses.",
    Direction.DOWN: "_Nothing recorded depends on it._",
}


# ---- the tree --------------------------------------------------------------------------------------


def lineage_blocks(tree: LineageTree) -> list[Block]:
    """The tree as indented mrkdwn lines packed into as few sections as fit, and notes on what is missing."""
    root = tree.root.asset
    arrow = ":arrow_up_small:" if tree.direction == Direction.UP else ":arrow_down_small:"
    other = Direction.DOWN if tree.direction == Direction.UP else Direction.UP
    intro = (f"{arrow} *Lineage {tree.direction.value}* of {node_text(tree.root)}\n"
             f"_{_EXPLAIN[tree.direction]}, to {tree.max_depth} levels._")
    lines = tree_lines(tree) or [_EMPTY[tree.direction]]
    notes = _notes(tree)
    notes.append(f"See the other way with `/steward lineage {escape(root.slug)} {other.value}`.")
    # One intro section and one context of notes; the rest of the message is the tree.
    room = MESSAGE_BLOCK_LIMIT - 2
    sections = pack_lines(lines, limit=TEXT_LIMIT)
    if len(sections) > room:
        kept = sections[:room]
        shown = sum(text.count("\n") + 1 for text in kept)
        notes.insert(0, f"{len(lines) - shown} more lines did not fit in one message.")
        sections = kept
    return [section(intro), *(section(text) for text in sections), context(" ".join(notes))]


def tree_lines(tree: LineageTree) -> list[str]:
    """One line per node under the root, indented by depth, with "…and N more" where a cap cut in."""
    lines: list[str] = []
    _walk(tree.root, tree.direction, lines)
    return lines


def _walk(parent: TreeNode, direction: Direction, lines: list[str]) -> None:
    for node in parent.children:
        lines.append(f"{INDENT * (node.depth - 1)}└ _{_edge_label(node.edges, direction)}_ {node_text(node)}")
        _walk(node, direction, lines)
    if parent.hidden:
        lines.append(f"{INDENT * parent.depth}└ _…and {parent.hidden} more_")


def _edge_label(edges: tuple[EdgeType, ...], direction: Direction) -> str:
    # Read from the parent: "trained on" going up, "used to train" going down.
    return ", ".join(e.label if direction == Direction.UP else e.inverse_label for e in edges)


def node_text(node: TreeNode) -> str:
    """An asset as a tree line shows it: datasets with owner, sensitivity, personal data and license."""
    asset = node.asset
    text = (f"{KIND_EMOJI[asset.kind]} *{_one_line(asset.name, NAME_CLIP)}* `{escape(asset.slug)}`"
            f" · {user(asset.owner_id)}")
    if asset.kind == AssetKind.DATASET:
        license_text = _one_line(asset.license, LICENSE_CLIP) if asset.license else "none recorded"
        personal = "*personal data*" if asset.contains_personal_data else "no personal data"
        text += f" · {asset.sensitivity.value.capitalize()} · {personal} · license {license_text}"
    elif asset.kind in (AssetKind.MODEL, AssetKind.SYSTEM):
        text += f" · {tier_badge(asset.effective_tier)}"
    text += status_suffix(asset.status)
    if node.cycle:
        text += " · :repeat: _loops back to an asset above_"
    elif node.repeat:
        text += " · _listed elsewhere in this tree_"
    elif node.below:
        text += f" · _{node.below} more below_"
    return text


def _one_line(text: str, limit: int) -> str:
    # A tree line must stay one line: user text loses its line breaks, then is clipped and escaped.
    return escape(clip(" ".join(text.split()), limit))


def _notes(tree: LineageTree) -> list[str]:
    notes = []
    if tree.levels_hidden:
        count = f"{tree.levels_hidden}{'+' if tree.levels_hidden_at_least else ''}"
        level = "level" if tree.levels_hidden == 1 and not tree.levels_hidden_at_least else "levels"
        deepest = next((n for n in tree.nodes() if n.below and not n.repeat), None)
        hint = (f" Continue with `/steward lineage {escape(deepest.asset.slug)} {tree.direction.value}`."
                if deepest else "")
        notes.append(f":scissors: {count} more {level} not shown.{hint}")
    if tree.hidden:
        notes.append(f"{tree.hidden} more {'entry is' if tree.hidden == 1 else 'entries are'} collapsed "
                     "into \"…and N more\".")
    return notes


def pack_lines(lines: list[str], *, limit: int = TEXT_LIMIT) -> list[str]:
    """Join lines into texts of at most `limit` characters, never splitting a line (each is clipped)."""
    texts: list[str] = []
    current = ""
    for line in lines:
        line = clip_markup(line, limit)
        if current and len(current) + 1 + len(line) > limit:
            texts.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        texts.append(current)
    return texts


# ---- the impact notice -----------------------------------------------------------------------------


def impact_notice(*, dataset: Asset, affected: list[Affected], changes: dict[str, list[Any]], actor: str,
                  recertify: set[int]) -> dict[str, Any]:
    """The DM to an owner whose models or systems were built from data that became personal or restricted."""
    what = []
    if PERSONAL_DATA in changes:
        what.append("as containing *personal data*")
    if RESTRICTED in changes:
        what.append(f"as *restricted* (was {escape(str(changes[RESTRICTED][0]))})")
    who = user(actor) if actor else "Someone"
    name = f"{KIND_EMOJI[dataset.kind]} *{escape(clip(dataset.name, NAME_CLIP))}* `{escape(dataset.slug)}`"
    were = "was" if len(affected) == 1 else "were"
    built = f"{_count(len(affected), 'asset')} of yours {were} built from it."
    head = (f":warning: {who} marked {name} {' and '.join(what) or 'again'}.\n{built} "
            "Check that their documentation and lawful basis still hold.")
    blocks: list[Block] = [section(head)]
    lines = [_affected_line(item, recertify) for item in affected[:IMPACT_ASSETS_SHOWN]]
    if len(affected) > IMPACT_ASSETS_SHOWN:
        lines.append(f"_…and {len(affected) - IMPACT_ASSETS_SHOWN} more._")
    if not affected:
        lines.append("_None of your assets are affected any more._")
    blocks += [section(text) for text in pack_lines(lines)[:MESSAGE_BLOCK_LIMIT - 3]]
    if recertify:
        blocks.append(context(f":clipboard: {len(recertify)} grant{'s' if len(recertify) != 1 else ''} on "
                              "high-risk assets queued for recertification."))
    blocks.append(actions(button("View dataset", Action.SHOW_ASSET, str(dataset.id))))
    text = f"{dataset.slug} was marked {' and '.join(_plain(changes))}: assets of yours were built from it."
    return {"text": escape(text), "blocks": blocks}


def _affected_line(item: Affected, recertify: set[int]) -> str:
    asset = item.asset
    line = (f"{KIND_EMOJI[asset.kind]} *{escape(clip(asset.name, NAME_CLIP))}* `{escape(asset.slug)}` · "
            f"{tier_badge(asset.effective_tier)}{status_suffix(asset.status)}")
    if item.grants:
        line += f"\n{INDENT}Access: {_holders(item.grants)}"
        queued = sum(1 for g in item.grants if g.id in recertify)
        if queued:
            line += f"\n{INDENT}:clipboard: {queued} to recertify"
    else:
        line += f"\n{INDENT}Nobody holds access through Steward."
    return line


def _holders(grants: tuple[Grant, ...]) -> str:
    shown = ", ".join(f"{user(g.grantee_id)} ({g.level.value})" for g in grants[:IMPACT_GRANTS_SHOWN])
    more = f" and {len(grants) - IMPACT_GRANTS_SHOWN} more" if len(grants) > IMPACT_GRANTS_SHOWN else ""
    return shown + more


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _plain(changes: dict[str, list[Any]]) -> list[str]:
    words = []
    if PERSONAL_DATA in changes:
        words.append("as containing personal data")
    if RESTRICTED in changes:
        words.append("restricted")
    return words or ["again"]
