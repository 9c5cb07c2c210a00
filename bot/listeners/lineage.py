"""`/steward lineage <slug> [up|down]`: the lineage tree of one asset, as an ephemeral answer.

Dispatched from `bot.listeners.commands.HANDLERS`; it only reads, so it answers directly.
"""

from __future__ import annotations

from typing import Any

from workflows import inventory
from workflows.lineage_tree import Direction, lineage_tree

from bot.context import BotContext
from bot.listeners.common import ephemeral, read
from bot.views.help import help_blocks
from bot.views.lineage import lineage_blocks

USAGE = ("Try `/steward lineage fraud-scorer` (what it was built from) "
         "or `/steward lineage churn-events down` (what depends on it).")
_DIRECTIONS = {"up": Direction.UP, "--up": Direction.UP, "down": Direction.DOWN, "--down": Direction.DOWN}


def parse_lineage_args(arg: str) -> tuple[str, Direction] | None:
    """(slug, direction) from "<slug> [up|down]" (either order); None when it is not that."""
    words = arg.split()
    directions = [_DIRECTIONS[w.lower()] for w in words if w.lower() in _DIRECTIONS]
    slugs = [w for w in words if w.lower() not in _DIRECTIONS]
    if len(slugs) != 1 or len(directions) > 1:
        return None
    return slugs[0], directions[0] if directions else Direction.UP


def lineage_command(ctx: BotContext, command: dict[str, Any], arg: str, respond, client) -> None:
    """`/steward lineage <slug> [up|down]`: the tree, up (default) or down, to five levels."""
    parsed = parse_lineage_args(arg)
    if parsed is None:
        ephemeral(respond, help_blocks(intro=f"Which asset, and which way? {USAGE}"), "Which asset?")
        return
    slug, direction = parsed

    def load(session) -> list[dict[str, Any]]:
        asset = inventory.find_asset(session=session, slug=slug)
        return lineage_blocks(lineage_tree(session=session, asset=asset, direction=direction))

    ephemeral(respond, read(ctx, load), f"Lineage {direction.value} of {slug}")
