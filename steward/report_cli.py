"""`steward report`: the governance report in the terminal, or as one HTML page with `--html FILE`.

The report is read in one short transaction as of now. On a terminal, headings are bold and the
past-expiry line is green or red; piped or redirected, the output is plain text (click strips the
styling when stdout is not a TTY). The HTML is written to a temporary file beside FILE that replaces
it only once complete.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import click

from steward.errors import friendly_errors
from workflows.settings import Settings


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file beside it, so a failure leaves no partial page."""
    path = path.expanduser()
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or Path("."))
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


@click.command("report")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the report as one self-contained HTML page to FILE instead of printing it.")
@friendly_errors("the report")
def report(html_path: Path | None) -> None:
    """The governance report: inventory, reviews, documentation gaps, access and expiry."""
    from workflows.db import make_engine, transaction
    from workflows.policy import load_policy
    from workflows.report import gather
    from workflows.report_render import past_expiry_line, render_html, render_text
    from workflows.schema import current_revision, head_revision

    settings = Settings()
    engine = make_engine(settings.resolved_database_url)
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise click.ClickException(f"the database schema is at {current or 'nothing'}, not {head}: "
                                   "run `steward db upgrade` first")
    policy = load_policy(settings.steward_policy)
    with transaction(engine) as session:
        gathered = gather(session, datetime.now(UTC), policy)
    if html_path is None:
        click.echo(render_text(gathered, style=click.style), nl=False)
        return
    write_atomically(html_path, render_html(gathered))
    click.echo(f"wrote {html_path}")
    if not gathered.ok:
        click.echo(click.style(past_expiry_line(gathered), fg="red", bold=True), err=True)
