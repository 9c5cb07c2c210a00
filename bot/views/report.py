"""Block Kit for `/steward report`: the headline numbers and the button that DMs the HTML page."""

from __future__ import annotations

from workflows.report import Report
from workflows.report_render import duration, past_expiry_line, tier_label, when

from bot.ids import Action
from bot.views.common import Block, actions, button, context, fields_section, header, section

HTML_VALUE = "html"


def report_summary(report: Report) -> list[Block]:
    """The report's headline numbers as an ephemeral message, with "Send me the HTML"."""
    systems = f" ({report.unclassified_systems} AI system(s) not classified)" if report.unclassified_systems else ""
    grants = ", ".join(f"{tier_label(t)} {n}" for t, n in sorted(
        report.grants_by_tier.items(), key=lambda item: -(item[0].rank if item[0] else -1)) if n)
    emergency = (f"{len(report.emergency)}, {report.emergency_unreviewed} not reviewed"
                 if report.emergency else "none")
    expiry = (f":white_check_mark: {past_expiry_line(report)}" if report.ok
              else f":red_circle: *{past_expiry_line(report)}*")
    return [
        header("Governance report"),
        section(expiry),
        fields_section([
            ("Inventory", f"{report.total_assets} assets, {report.unclassified} unclassified{systems}"),
            ("Reviews", (f"{report.reviews_on_time} on time, {report.reviews_due} due, "
                         f"{report.reviews_overdue} overdue")),
            ("Missing documentation", f"{len(report.doc_gaps)} high or limited asset(s)"),
            ("Active grants", f"{report.active_grants}" + (f" ({grants})" if grants else "")),
            ("Time to decision", (f"median {duration(report.median_decision)}, "
                                  f"p95 {duration(report.p95_decision)}")),
            ("Expired undecided", str(report.expired_undecided)),
            ("Emergency grants", emergency),
        ]),
        actions(button("Send me the HTML", Action.REPORT_HTML, HTML_VALUE, style="primary")),
        context(f"As of {when(report.now)}. `steward report --html FILE` writes the same page."),
    ]


def report_sent(report: Report, filename: str) -> list[Block]:
    """The reply once the page is in the clicker's DMs."""
    return [section(f":inbox_tray: Sent `{filename}` (as of {when(report.now)}) to your DMs with Steward.")]
