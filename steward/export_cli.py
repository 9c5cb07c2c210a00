"""`steward export …`: the inventory, the decision log and access, to stdout or `--out FILE`.

Everything a user typed is checked before anything is written. With `--out`, the export goes to a
temporary file beside FILE that replaces it only once the export is complete, so a failed export
never leaves a partial or empty file behind. A progress bar shows on stderr when stderr is a
terminal and the export has more than PROGRESS_MIN_ROWS rows.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import click
from sqlalchemy import Engine

from steward.errors import friendly_errors
from workflows.db import make_engine, transaction
from workflows.exports import access as access_export
from workflows.exports import decisions as decisions_export
from workflows.exports import inventory as inventory_export
from workflows.exports.common import parse_tier, parse_when
from workflows.inventory import find_asset
from workflows.settings import Settings

PROGRESS_MIN_ROWS = 5000
INVENTORY_FORMATS = ("csv", "json", "cyclonedx")
DECISION_FORMATS = ("jsonl", "csv")
ACCESS_FORMATS = ("csv",)




def _out_option(fn):
    return click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help="Write to FILE (replaced only when the export succeeds) instead of stdout.")(fn)


def _choose(value: str, choices: tuple[str, ...]) -> str:
    wanted = value.strip().lower()
    if wanted not in choices:
        options = f"{', '.join(choices[:-1])} or {choices[-1]}" if len(choices) > 1 else choices[0]
        raise click.ClickException(f"unknown format {value!r}: choose {options}")
    return wanted


def _engine() -> Engine:
    # Only workflows is needed here; steward.runtime would import the whole bot and Celery.
    from workflows.schema import current_revision, head_revision

    engine = make_engine(Settings().resolved_database_url)
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise click.ClickException(f"the database schema is at {current or 'nothing'}, not {head}: "
                                   "run `steward db upgrade` first")
    return engine


@contextmanager
def _output(out: Path | None, *, newline: str = "") -> Iterator[TextIO]:
    """A text stream for the export: stdout, or a temporary file that becomes `out` on success."""
    if out is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    if out.exists() and not out.is_file():
        # /dev/null, a FIFO: nothing to replace, and renaming over a device would be wrong.
        with open(out, "w", encoding="utf-8", newline=newline) as stream:
            yield stream
        return
    directory = out.parent if str(out.parent) else Path(".")
    fd, temp_name = tempfile.mkstemp(dir=directory, prefix=f".{out.name}.", suffix=".part")
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would have.
        os.chmod(temp_name, out.stat().st_mode & 0o777 if out.exists() else 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, out)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _progress(rows: Iterable, count: Callable[[], int], label: str):
    """`rows` behind a progress bar on stderr, only when stderr is a terminal and there are many rows."""
    if not sys.stderr.isatty():
        return nullcontext(rows)
    total = count()
    if total <= PROGRESS_MIN_ROWS:
        return nullcontext(rows)
    return click.progressbar(rows, length=total, label=label, file=sys.stderr)


def _csv_writer(stream: TextIO):
    return csv.writer(stream, lineterminator="\n")


@click.group("export")
def export() -> None:
    """Evidence for auditors: the inventory, the decision log and who had access."""


@export.command("inventory")
@click.option("--format", "fmt", default="csv", show_default=True, metavar="csv|json|cyclonedx",
              help="csv or json with every field, or a CycloneDX 1.6 ML-BOM (strictly validated).")
@_out_option
@friendly_errors("the export")
def inventory(fmt: str, out: Path | None) -> None:
    """Every asset: common fields, kind-specific details, effective tier and lineage (as slugs)."""
    fmt = _choose(fmt, INVENTORY_FORMATS)
    engine = _engine()
    with transaction(engine) as session:
        if fmt == "cyclonedx":
            # Imported here: the CycloneDX library is only needed by this one format.
            from workflows.exports.bom import build_bom

            # Built and validated in full before a byte is written.
            document = build_bom(session=session, now=datetime.now(UTC))
            with _output(out) as stream:
                json.dump(document, stream, indent=2, ensure_ascii=False)
                stream.write("\n")
            return
        items = inventory_export.iter_inventory(session=session)
        with _output(out) as stream, \
                _progress(items, lambda: inventory_export.count_assets(session=session), "assets") as rows:
            if fmt == "csv":
                writer = _csv_writer(stream)
                writer.writerow(inventory_export.CSV_COLUMNS)
                for item in rows:
                    writer.writerow(inventory_export.csv_row(item))
            else:
                stream.write("[")
                for index, item in enumerate(rows):
                    record = json.dumps(inventory_export.json_record(item), ensure_ascii=False)
                    stream.write(("," if index else "") + "\n  " + record)
                stream.write("\n]\n")


@export.command("decisions")
@click.option("--format", "fmt", default="jsonl", show_default=True, metavar="jsonl|csv",
              help="jsonl (one JSON object per line) or csv, both with prev_hash and hash.")
@click.option("--since", default=None, metavar="DATE", help="Entries at or after DATE (YYYY-MM-DD or ISO 8601, UTC).")
@click.option("--until", default=None, metavar="DATE", help="Entries at or before DATE (a bare date: its whole day).")
@click.option("--asset", "slug", default=None, metavar="SLUG", help="Entries about this asset, its requests and grants.")
@click.option("--tier", default=None, metavar="TIER", help="Entries about assets whose effective tier is TIER now.")
@_out_option
@friendly_errors("the export")
def decisions(fmt: str, since: str | None, until: str | None, slug: str | None, tier: str | None,
              out: Path | None) -> None:
    """Decision-log entries in seq order, each with prev_hash and hash (see README to re-check the chain)."""
    fmt = _choose(fmt, DECISION_FORMATS)
    start = parse_when(since, option="--since") if since else None
    end = parse_when(until, option="--until", end_of_day=True) if until else None
    if start and end and start > end:
        raise click.ClickException("--since is after --until: nothing could match")
    wanted_tier = parse_tier(tier) if tier else None
    engine = _engine()
    with transaction(engine) as session:
        asset_id = find_asset(session=session, slug=slug).id if slug else None
        head = decisions_export.head_seq(session=session)
    filters = decisions_export.DecisionFilter(since=start, until=end, asset_id=asset_id, tier=wanted_tier)
    entries = decisions_export.stream_decisions(engine=engine, filters=filters, up_to_seq=head)

    def count() -> int:
        with transaction(engine) as session:
            return decisions_export.count_decisions(session=session, filters=filters, up_to_seq=head)

    with _output(out) as stream, _progress(entries, count, "entries") as rows:
        if fmt == "jsonl":
            for entry in rows:
                stream.write(decisions_export.jsonl_line(entry) + "\n")
        else:
            writer = _csv_writer(stream)
            writer.writerow(decisions_export.FIELDS)
            for entry in rows:
                writer.writerow(decisions_export.csv_row(entry))


@export.command("access")
@click.option("--format", "fmt", default="csv", show_default=True, metavar="csv",
              help="csv, one row per grant (the only format for now).")
@click.option("--as-of", "as_of", default=None, metavar="DATE",
              help="Who had access at DATE (a bare date: the end of that day), replayed from the decision log.")
@_out_option
@friendly_errors("the export")
def access(fmt: str, as_of: str | None, out: Path | None) -> None:
    """Who has (or had) access to what: asset, grantee, level, dates, approvers, emergency flag, status."""
    _choose(fmt, ACCESS_FORMATS)
    moment = parse_when(as_of, option="--as-of", end_of_day=True) if as_of else None
    engine = _engine()
    if moment is not None:
        rows = access_export.access_as_of(engine=engine, as_of=moment)
        with _output(out) as stream, _progress(rows, lambda: len(rows), "grants") as shown:
            _write_access(stream, shown)
        return
    with transaction(engine) as session:
        grants = access_export.current_access(session=session)
        with _output(out) as stream, \
                _progress(grants, lambda: access_export.count_active_grants(session=session), "grants") as shown:
            _write_access(stream, shown)


def _write_access(stream: TextIO, rows: Iterable[access_export.AccessRow]) -> None:
    writer = _csv_writer(stream)
    writer.writerow(access_export.CSV_COLUMNS)
    for row in rows:
        writer.writerow(row.csv_row())
