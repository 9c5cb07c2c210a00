"""`steward audit …`: verify the decision log's hash chain (and its anchors), and anchor it now.

`verify` walks the chain a batch at a time, each batch in its own short transaction, so memory stays
flat however long the log is and writers are never held up. It prints the entry count and the head
hash, or exits 1 with one line naming the first bad entry and what is wrong with it.
"""

from __future__ import annotations

import click

from steward.errors import friendly_errors
from workflows.settings import Settings


@click.group()
def audit() -> None:
    """The decision log: verify its hash chain, and anchor its head in Slack."""


@audit.command("verify")
@click.option("--anchors", is_flag=True,
              help="Also check the log against every anchor posted to Slack (catches truncation and rewrites).")
@friendly_errors()
def audit_verify(anchors: bool) -> None:
    """Walk the decision log's hash chain; exit 1 naming the first bad entry."""
    from steward import runtime
    from workflows.anchors import verify_log

    engine = runtime.engine_for(Settings())
    runtime.require_current_schema(engine)
    verdict = verify_log(engine=engine, anchors=anchors)
    if not verdict.ok:
        raise click.ClickException(verdict.problem)
    click.echo(f"ok: {verdict.chain.count} entries, head hash {verdict.chain.head_hash}")
    if verdict.anchors is not None:
        checked = verdict.anchors
        latest = f", the latest of {checked.latest_at:%Y-%m-%d %H:%M} UTC" if checked.latest_at else ""
        click.echo(f"ok: matches {checked.checked} anchor(s), {checked.posted} confirmed by Slack{latest}")


@audit.command("anchor")
@friendly_errors()
def audit_anchor() -> None:
    """Post the decision log's head to the audit channel now (the sweep does it once a day)."""
    from steward import runtime
    from workers.celery_app import make_celery, utc_now
    from workers.tasks import enqueue_delivery
    from workflows.anchors import create_anchor
    from workflows.db import transaction
    from workflows.outbox import added_message_ids

    settings = Settings()
    runtime.configure_logging(settings)
    engine = runtime.engine_for(settings)
    runtime.require_current_schema(engine)
    policy = runtime.policy_for(settings)
    with transaction(engine) as session:
        anchor = create_anchor(session=session, now=utc_now(), policy=policy)
        message_ids = added_message_ids(session)
    make_celery(settings)
    # Committed either way: if the broker is down, the sweep delivers the post later.
    how = "a worker posts it" if enqueue_delivery(message_ids) else "the sweep posts it (broker unreachable)"
    click.echo(f"anchored entry {anchor.seq} ({anchor.entry_count} entries, head hash {anchor.head_hash}); "
               f"{how} to {policy.channels.audit}")
