"""`/steward report` and its "Send me the HTML" button.

Only the policy's admin and governance groups may see the report; the command and every click are
authorised against the groups the directory resolves now. Both only read, so they answer directly:
the command with the headline numbers, the click by uploading the HTML page (re-read as of the
click) into the clicker's DM with `files_upload_v2` (the `files:write` scope).
"""

from __future__ import annotations

from typing import Any

from slack_bolt import App

from workflows.report import Report, ensure_may_see_report, gather
from workflows.report_render import render_html

from bot.context import BotContext
from bot.ids import Action
from bot.listeners.common import actor_for, answer_at_once, ephemeral, read, responder
from bot.views.report import report_sent, report_summary


def report_command(ctx: BotContext, command: dict[str, Any], arg: str, respond, client) -> None:
    """`/steward report`: the headline numbers, for the admin and governance groups only."""
    actor = actor_for(ctx, command["user_id"])
    ensure_may_see_report(actor=actor, policy=ctx.policy)
    report = _gather(ctx)
    ephemeral(respond, report_summary(report), "Governance report")


def send_html(ctx: BotContext, client, user_id: str) -> tuple[Report, str]:
    """Re-authorise, re-read the report and upload its HTML page into the user's DM; returns what was sent."""
    ensure_may_see_report(actor=actor_for(ctx, user_id), policy=ctx.policy)
    report = _gather(ctx)
    filename = f"steward-report-{report.now:%Y-%m-%d-%H%M}.html"
    channel = client.conversations_open(users=user_id)["channel"]["id"]
    client.files_upload_v2(channel=channel, content=render_html(report).encode("utf-8"), filename=filename,
                           title=f"Steward governance report {report.now:%Y-%m-%d %H:%M} UTC",
                           initial_comment="Here is the governance report. Open it in a browser; it prints well.")
    return report, filename


def register(app: App, ctx: BotContext) -> None:
    """Attach the report button."""

    @app.action(Action.REPORT_HTML)
    def send_report(ack, body: dict[str, Any], respond, client) -> None:
        ack()
        answer = responder(body, respond, client)

        def run() -> None:
            report, filename = send_html(ctx, client, body["user"]["id"])
            ephemeral(answer, report_sent(report, filename), f"Sent {filename}")

        answer_at_once(ctx, answer, run)


def _gather(ctx: BotContext) -> Report:
    now = ctx.clock()
    return read(ctx, lambda session: gather(session, now, ctx.policy))
