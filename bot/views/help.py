"""The /steward help text."""

from __future__ import annotations

from bot.views.common import Block, context, escape, section

COMMANDS = [
    ("/steward register [kind]", "Register a dataset, model, algorithm, infrastructure, documentation or AI system."),
    ("/steward asset <slug>", "Show an asset: owner, tier, lineage, documentation and reviews."),
    ("/steward search <words>", "Find assets by name, slug, description or team (best 10)."),
    ("/steward classify <system>", "Answer the EU AI Act questionnaire for an AI system."),
    ("/steward edit <slug>", "Edit an asset you own."),
    ("/steward mine", "List the assets you own and the reviews you have due."),
    ("/steward request <slug>", "Ask for access to an asset; the approvers its risk tier needs are asked for you."),
    ("/steward request <slug> --emergency",
     "Break-glass: access at once for a few hours; security is alerted and the owner reviews it."),
    ("/steward access", "List your access and pending requests, to release or cancel them."),
    ("/steward lineage <slug> [up|down]",
     "Show what an asset was built from (up), or what depends on it (down), five levels deep."),
    ("/steward report", "Governance report: headline numbers, and the full page in a DM (admins and governance)."),
    ("/steward help", "Show this help."),
]


def help_blocks(*, intro: str | None = None) -> list[Block]:
    """Every command with a one-line explanation."""
    lines = "\n".join(f"`{escape(usage)}` — {what}" for usage, what in COMMANDS)
    blocks = [section((intro + "\n\n" if intro else "") + "*Steward keeps your AI assets under control.*\n" + lines)]
    blocks.append(context("Kinds: dataset, model, algorithm, infrastructure, documentation, system."))
    return blocks
