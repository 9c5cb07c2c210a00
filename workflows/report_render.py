"""The governance report as text (the terminal) and as one self-contained HTML page.

Both are pure functions of a `workflows.report.Report`. The page carries its own CSS and draws its
bar charts as inline SVG (no xmlns either: inline SVG in HTML needs none), so it makes no network
request and names no URL at all (its Content-Security-Policy forbids loading anything, too); an `@media print` block keeps it readable on paper.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from html import escape

from workflows.enums import AssetKind, RiskTier
from workflows.report import TIER_ORDER, Report

Style = Callable[..., str]
TIER_LABELS = {RiskTier.PROHIBITED: "Prohibited", RiskTier.HIGH: "High", RiskTier.LIMITED: "Limited",
               RiskTier.MINIMAL: "Minimal", None: "Unclassified"}
TIER_COLOURS = {RiskTier.PROHIBITED: "#5b2333", RiskTier.HIGH: "#c0392b", RiskTier.LIMITED: "#e67e22",
                RiskTier.MINIMAL: "#27ae60", None: "#95a5a6"}


def tier_label(tier: RiskTier | None) -> str:
    """"High", …, "Unclassified"."""
    return TIER_LABELS[tier]


def duration(value: timedelta | None) -> str:
    """A short human duration: "45m", "3h 05m", "2d 4h"; "—" when there is none."""
    if value is None:
        return "—"
    minutes = int(value.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {mins:02d}m"
    return f"{mins}m"


def when(value: datetime) -> str:
    """A UTC timestamp to the minute."""
    return value.strftime("%Y-%m-%d %H:%M UTC")


def past_expiry_line(report: Report) -> str:
    """The one line about grants past expiry: OK at zero, a failure otherwise."""
    count = report.past_expiry_count
    if not count:
        return "Grants past expiry, not revoked: 0 (OK)"
    return f"FAILURE: {count} grant{'s' if count != 1 else ''} past expiry but not revoked (must be 0)"


# ---- text ----------------------------------------------------------------------------------------


def _no_style(text: str, **_: object) -> str:
    return text


def _table(rows: list[list[str]], *, right: set[int] = frozenset(), indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append(indent + "  ".join(cells).rstrip())
    return lines


def render_text(report: Report, *, style: Style = _no_style) -> str:
    """The report as aligned plain text; `style` (click.style) may add emphasis for a terminal."""
    out = [style(f"Steward governance report, {when(report.now)}", bold=True), ""]

    systems = f", {report.unclassified_systems} AI system(s) not classified" if report.unclassified_systems else ""
    out.append(style(f"Inventory: {report.total_assets} assets, {report.unclassified} unclassified{systems}",
                     bold=True))
    rows = [["Kind", *(tier_label(t) for t in TIER_ORDER), "Total"]]
    for kind in AssetKind:
        tiers = report.inventory.get(kind, {})
        rows.append([kind.label, *(str(tiers.get(t, 0)) for t in TIER_ORDER), str(sum(tiers.values()))])
    rows.append(["Total", *(str(report.assets_in_tier(t)) for t in TIER_ORDER), str(report.total_assets)])
    out += _table(rows, right=set(range(1, len(TIER_ORDER) + 2))) + [""]

    out.append(style(f"Reviews: {report.reviews_on_time} on time, {report.reviews_due} due within 14 days, "
                     f"{report.reviews_overdue} overdue", bold=True))
    if report.reviews:
        rows = [["Owner", "On time", "Due", "Overdue"]]
        rows += [[r.owner_id, str(r.on_time), str(r.due), str(r.overdue)] for r in report.reviews]
        out += _table(rows, right={1, 2, 3})
    else:
        out.append("  No reviews scheduled.")
    out.append("")

    out.append(style(f"Missing documentation: {len(report.doc_gaps)} high or limited asset(s)", bold=True))
    if report.doc_gaps:
        rows = [[g.slug, g.kind.value, tier_label(g.tier), g.owner_id, ", ".join(d.label for d in g.missing)]
                for g in report.doc_gaps]
        out += _table([["Asset", "Kind", "Tier", "Owner", "Missing"], *rows])
    else:
        out.append("  None: every high and limited asset has its required documents.")
    out.append("")

    out.append(style("Access", bold=True))
    tiers = [t for t in TIER_ORDER if t != RiskTier.PROHIBITED or report.grants_by_tier.get(t)]
    rows = [["Active grants", ", ".join(f"{tier_label(t)} {report.grants_by_tier.get(t, 0)}" for t in tiers)
             + f" (total {report.active_grants})"],
            ["Time to decision", (f"median {duration(report.median_decision)}, 95th percentile "
                                  f"{duration(report.p95_decision)} ({report.decisions} decided)")],
            ["Expired undecided", str(report.expired_undecided)],
            ["Emergency grants", (f"{len(report.emergency)}, "
                                  f"{len(report.emergency) - report.emergency_unreviewed} reviewed, "
                                  f"{report.emergency_unreviewed} not reviewed")]]
    out += _table(rows)
    unreviewed = [e for e in report.emergency if not e.reviewed]
    if unreviewed:
        out += _table([[e.asset_slug, e.grantee_id, when(e.granted_at), e.status.value, "not reviewed"]
                       for e in unreviewed], indent="    ")
    out.append("")
    line = past_expiry_line(report)
    out.append(style(line, fg="green", bold=True) if report.ok else style(line, fg="red", bold=True))
    if report.past_expiry:
        out += _table([[g.asset_slug, g.grantee_id, f"expired {when(g.expires_at)}", f"grant #{g.grant_id}"]
                       for g in report.past_expiry], indent="    ")
    return "\n".join(out) + "\n"


# ---- HTML ----------------------------------------------------------------------------------------

CSS = """
:root { --ink:#1d2630; --muted:#5d6b78; --line:#d9dee3; --bad:#b3261e; --good:#1e7b34; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       margin: 0 auto; max-width: 980px; padding: 24px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px;
     border-bottom: 2px solid var(--line); padding-bottom: 4px; }
.sub { color: var(--muted); margin: 0 0 16px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 10px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
.card .n { font-size: 24px; font-weight: 700; } .card .l { color: var(--muted); font-size: 12px; }
.card.bad { border-color: var(--bad); color: var(--bad); background: #fdecea; }
.card.good .n { color: var(--good); }
.failure { border: 2px solid var(--bad); background: #fdecea; color: var(--bad); font-weight: 700;
           padding: 10px 14px; border-radius: 8px; margin: 16px 0; }
.ok { color: var(--good); font-weight: 700; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 10px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 12px; color: var(--muted); text-transform: uppercase; letter-spacing: .03em; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: 700; }
.charts { display: grid; grid-template-columns: 1fr 1fr; gap: 20px; }
figure { margin: 0; } figcaption { color: var(--muted); font-size: 12px; }
svg text { font: 12px system-ui, sans-serif; fill: var(--ink); }
.bad-text { color: var(--bad); font-weight: 700; }
@media print {
  body { max-width: none; padding: 0; font-size: 11pt; }
  h2 { break-after: avoid; } table, figure, .cards, .failure { break-inside: avoid; }
  .card, .failure { background: none !important; }
  .charts { grid-template-columns: 1fr 1fr; }
  a { color: inherit; text-decoration: none; }
}
"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def bar_chart(title: str, bars: list[tuple[str, int, str]], *, chart_id: str) -> str:
    """A horizontal bar chart as inline SVG: one labelled bar per (label, value, colour)."""
    width, label_w, row_h, pad = 440, 110, 26, 8
    top = max((value for _, value, _ in bars), default=0) or 1
    span = width - label_w - 50
    height = pad * 2 + row_h * len(bars)
    parts = [(f'<svg id="{_e(chart_id)}" class="chart" role="img" aria-label="{_e(title)}" '
              f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMinYMin meet">'),
             f"<title>{_e(title)}</title>"]
    for i, (label, value, colour) in enumerate(bars):
        y = pad + i * row_h
        w = round(span * value / top) if value else 0
        parts.append(f'<text x="{label_w - 8}" y="{y + 17}" text-anchor="end">{_e(label)}</text>')
        parts.append(f'<rect class="bar" x="{label_w}" y="{y + 4}" width="{max(w, 1) if value else 0}" '
                     f'height="{row_h - 8}" fill="{colour}" data-label="{_e(label)}" data-value="{value}"/>')
        parts.append(f'<text x="{label_w + w + 6}" y="{y + 17}">{value}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table_html(head: list[str], rows: list[list[str]], *, numeric: set[int] = frozenset(),
                total: list[str] | None = None) -> str:
    def cells(row: list[str], tag: str) -> str:
        return "".join(f'<{tag}{" class=num" if i in numeric else ""}>{cell}</{tag}>' for i, cell in enumerate(row))
    body = "".join(f"<tr>{cells(row, 'td')}</tr>" for row in rows)
    if total:
        body += f'<tr class="total">{cells(total, "td")}</tr>'
    return f"<table><thead><tr>{cells(head, 'th')}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page: inline CSS, inline SVG charts, no URLs."""
    failing = not report.ok
    cards = [("Assets", report.total_assets, ""), ("Unclassified", report.unclassified, ""),
             ("Reviews overdue", report.reviews_overdue, "bad" if report.reviews_overdue else ""),
             ("Missing documentation", len(report.doc_gaps), ""),
             ("Active grants", report.active_grants, ""),
             ("Median time to decision", duration(report.median_decision), ""),
             ("Past expiry, not revoked", report.past_expiry_count, "bad" if failing else "good")]
    card_html = "".join(f'<div class="card {cls}" id="card-{i}"><div class="n">{_e(value)}</div>'
                        f'<div class="l">{_e(label)}</div></div>' for i, (label, value, cls) in enumerate(cards))

    inventory_rows = []
    for kind in AssetKind:
        tiers = report.inventory.get(kind, {})
        inventory_rows.append([_e(kind.label), *(str(tiers.get(t, 0)) for t in TIER_ORDER), str(sum(tiers.values()))])
    inventory_table = _table_html(
        ["Kind", *(tier_label(t) for t in TIER_ORDER), "Total"], inventory_rows,
        numeric=set(range(1, len(TIER_ORDER) + 2)),
        total=["Total", *(str(report.assets_in_tier(t)) for t in TIER_ORDER), str(report.total_assets)])
    inventory_chart = bar_chart("Assets by tier", [(tier_label(t), report.assets_in_tier(t), TIER_COLOURS[t])
                                                   for t in TIER_ORDER], chart_id="chart-inventory")
    grants_chart = bar_chart("Active grants by tier",
                             [(tier_label(t), report.grants_by_tier.get(t, 0), TIER_COLOURS[t]) for t in TIER_ORDER],
                             chart_id="chart-grants")

    reviews = (_table_html(["Owner", "On time", "Due within 14 days", "Overdue"],
                           [[_e(r.owner_id), str(r.on_time), str(r.due),
                             f'<span class="bad-text">{r.overdue}</span>' if r.overdue else "0"]
                            for r in report.reviews], numeric={1, 2, 3},
                           total=["Total", str(report.reviews_on_time), str(report.reviews_due),
                                  str(report.reviews_overdue)])
               if report.reviews else "<p>No reviews scheduled.</p>")
    gaps = (_table_html(["Asset", "Kind", "Tier", "Owner", "Missing"],
                        [[_e(g.slug), _e(g.kind.label), _e(tier_label(g.tier)), _e(g.owner_id),
                          _e(", ".join(d.label for d in g.missing))] for g in report.doc_gaps])
            if report.doc_gaps else "<p>None: every high and limited asset has its required documents.</p>")
    emergency = (_table_html(["Asset", "Grantee", "Granted", "Status", "Owner review"],
                             [[_e(e.asset_slug), _e(e.grantee_id), _e(when(e.granted_at)), _e(e.status.value),
                               '<span class="ok">reviewed</span>' if e.reviewed
                               else '<span class="bad-text">not reviewed</span>'] for e in report.emergency])
                 if report.emergency else "<p>No emergency grants.</p>")
    if failing:
        expiry = (f'<div class="failure" id="past-expiry" data-count="{report.past_expiry_count}">'
                  f"{_e(past_expiry_line(report))}</div>"
                  + _table_html(["Grant", "Asset", "Grantee", "Expired"],
                                [[f"#{g.grant_id}", _e(g.asset_slug), _e(g.grantee_id), _e(when(g.expires_at))]
                                 for g in report.past_expiry]))
    else:
        expiry = (f'<p class="ok" id="past-expiry" data-count="0">{_e(past_expiry_line(report))}</p>')
    banner = (f'<div class="failure" id="failure-banner">{_e(past_expiry_line(report))}</div>'
              if failing else "")
    access_table = _table_html(["Measure", "Value"], [
        ["Active grants", str(report.active_grants)],
        ["Median time to decision", _e(duration(report.median_decision))],
        ["95th percentile time to decision", _e(duration(report.p95_decision))],
        ["Requests decided", str(report.decisions)],
        ["Requests expired undecided", str(report.expired_undecided)],
        ["Emergency grants (not reviewed)", f"{len(report.emergency)} ({report.emergency_unreviewed})"],
    ], numeric={1})

    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Steward governance report, {_e(when(report.now))}</title>
<style>{CSS}</style>
</head>
<body>
<header>
<h1>Steward governance report</h1>
<p class="sub">As of {_e(when(report.now))}. Retired assets are left out.</p>
</header>
{banner}
<section class="cards">{card_html}</section>
<section id="inventory">
<h2>Inventory by kind and tier</h2>
<p>{report.total_assets} assets; {report.unclassified} unclassified
({report.unclassified_systems} AI system(s) without a risk classification).</p>
{inventory_table}
</section>
<section class="charts">
<figure>{inventory_chart}<figcaption>Assets by risk tier</figcaption></figure>
<figure>{grants_chart}<figcaption>Active grants by risk tier</figcaption></figure>
</section>
<section id="reviews">
<h2>Reviews</h2>
<p>{report.reviews_on_time} on time, {report.reviews_due} due within 14 days, {report.reviews_overdue} overdue.</p>
{reviews}
</section>
<section id="documentation">
<h2>High and limited assets missing required documentation</h2>
{gaps}
</section>
<section id="access">
<h2>Access</h2>
{access_table}
<h2>Emergency grants</h2>
{emergency}
<h2>Grants past expiry</h2>
{expiry}
</section>
</body>
</html>
"""
