"""The `steward` command line: serve, worker, scheduler, dev, sweep, db and policy."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from steward.errors import friendly_errors
from workflows.settings import Settings

log = logging.getLogger("steward")


def _settings() -> Settings:
    return Settings()




@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Steward: an inventory, risk, access and review bot for AI assets, in Slack."""


@main.command()
@click.option("--port", default=3000, show_default=True, help="HTTP port for /slack/events and /healthz.")
@click.option("--host", default="0.0.0.0", show_default=True, help="Interface to listen on.")
@friendly_errors()
def serve(port: int, host: str) -> None:
    """Run the Slack bot (Socket Mode when SLACK_APP_TOKEN is set, else HTTP at /slack/events)."""
    from steward import runtime, server

    settings = _settings()
    runtime.configure_logging(settings)
    runtime.require_slack_credentials(settings)
    engine = runtime.engine_for(settings)
    runtime.require_current_schema(engine)
    app = runtime.build_bot(settings, engine)
    if settings.socket_mode:
        server.serve_socket_mode(app, settings, host=host, port=port)
    else:
        server.serve_http(app, host=host, port=port)


@main.command()
@click.option("--concurrency", "-c", default=4, show_default=True, help="Tasks run at once.")
@click.option("--pool", default="threads", show_default=True, type=click.Choice(["threads", "prefork", "solo"]))
@friendly_errors()
def worker(concurrency: int, pool: str) -> None:
    """Run the Celery worker that delivers Slack messages and runs the sweep."""
    from steward import runtime
    from workers.celery_app import make_celery

    settings = _settings()
    runtime.configure_logging(settings)
    runtime.require_current_schema(runtime.engine_for(settings))
    app = make_celery(settings)
    app.worker_main(["worker", f"--loglevel={settings.log_level.upper()}", f"--pool={pool}",
                     f"--concurrency={concurrency}", "--without-gossip", "--without-mingle",
                     "--hostname=steward@%h"])


@main.command()
@click.option("--interval", default=60, show_default=True, help="Seconds between sweeps.")
@friendly_errors()
def scheduler(interval: int) -> None:
    """Run the scheduler: the leader among its copies enqueues a sweep every minute."""
    from steward import runtime
    from workers.celery_app import make_celery, utc_now
    from workers.scheduler import run_scheduler
    from workers.tasks import sweep

    settings = _settings()
    runtime.configure_logging(settings)
    engine = runtime.engine_for(settings)
    runtime.require_current_schema(engine)
    make_celery(settings)
    run_scheduler(engine=engine, enqueue_sweep=sweep.delay, holder=runtime.holder_name(), clock=utc_now,
                  interval=interval)


@main.command()
@click.option("--dry-run", is_flag=True, help="Print what is due without enqueuing or changing anything.")
@friendly_errors()
def sweep(dry_run: bool) -> None:
    """Run one sweep now (for cron or a Kubernetes CronJob instead of `steward scheduler`)."""
    from kombu.exceptions import OperationalError as BrokerUnavailable

    from steward import runtime
    from workers.celery_app import build_context, make_celery
    from workers.tasks import (
        OUTBOX,
        PROVISIONING,
        DueKind,
        deliver_outbox,
        enqueue_due,
        enqueue_job,
        prune_broker_files,
        sweep_once,
    )

    labels = {
        OUTBOX: "outbox message(s)",
        DueKind.REMINDER: "approval reminder(s)",
        DueKind.ESCALATION: "escalation(s)",
        DueKind.REQUEST_EXPIRY: "request expiry(ies)",
        DueKind.GRANT_WARNING: "grant expiry warning(s)",
        DueKind.GRANT_EXPIRY: "grant expiry(ies)",
        PROVISIONING: "provisioning job(s)",
        DueKind.AUDIT_ANCHOR: "audit anchor(s)",
        DueKind.REVIEW_SCHEDULE: "owner review nudge(s) to schedule",
        DueKind.REVIEW_NUDGE: "review nudge(s)",
        DueKind.REVIEW_ESCALATION: "overdue review escalation(s)",
        DueKind.RECERT_START: "recertification(s) to start",
        DueKind.RECERT_ESCALATION: "recertification escalation(s)",
    }
    settings = _settings()
    runtime.configure_logging(settings)
    engine = runtime.engine_for(settings)
    runtime.require_current_schema(engine)
    context = build_context(settings, engine=engine)
    if dry_run:
        # The real sweep's own queries, with enqueuers that drop everything: what it prints is
        # exactly what a sweep would enqueue now, and nothing is sent, claimed or changed.
        counts = sweep_once(context=context, enqueue_due=lambda kind, item_id: None,
                            enqueue_delivery=lambda ids: None, enqueue_provision=lambda job_id: None)
        for kind, count in counts.items():
            click.echo(f"{count} {labels[kind]} due")
        return
    make_celery(settings, context=context)
    try:
        counts = sweep_once(context=context, enqueue_due=enqueue_due, enqueue_delivery=deliver_outbox.delay,
                            enqueue_provision=enqueue_job)
    except (BrokerUnavailable, OSError) as exc:
        # Nothing is lost: everything due stays due in the database for the next sweep.
        raise click.ClickException(f"cannot reach the broker ({type(exc).__name__}); "
                                   "nothing was lost, run the sweep again") from None
    # Without `steward scheduler`, no sweep task runs on a worker, so its housekeeping happens here.
    prune_broker_files(context)
    for kind, count in counts.items():
        click.echo(f"enqueued {count} {labels[kind]}")


@main.command()
@click.option("--port", default=3000, show_default=True, help="HTTP port for the bot.")
@friendly_errors()
def dev(port: int) -> None:
    """Run bot, worker and scheduler together on embedded defaults; Ctrl-C stops them all."""
    from steward import devrun

    sys.exit(devrun.run_all(_settings(), port=port))


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@friendly_errors()
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION."""
    from steward import runtime
    from workflows.schema import current_revision, upgrade_database

    engine = runtime.engine_for(_settings())
    upgrade_database(engine, revision)
    click.echo(f"database at revision {current_revision(engine)}")


@db.command("current")
@friendly_errors()
def db_current() -> None:
    """Print the database's schema revision."""
    from steward import runtime
    from workflows.schema import current_revision

    click.echo(current_revision(runtime.engine_for(_settings())) or "empty (run `steward db upgrade`)")


@db.command("downgrade")
@click.argument("revision")
@friendly_errors()
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION (`base` removes every table)."""
    from steward import runtime
    from workflows.schema import current_revision, downgrade_database

    engine = runtime.engine_for(_settings())
    downgrade_database(engine, revision)
    click.echo(f"database at revision {current_revision(engine) or 'base'}")


@main.group()
def policy() -> None:
    """Policy file commands."""


@policy.command("check")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@friendly_errors()
def policy_check(path: Path | None) -> None:
    """Validate a policy file (default: STEWARD_POLICY, or the packaged default)."""
    from workflows.policy import load_policy

    chosen = path or _settings().steward_policy
    loaded = load_policy(chosen)
    click.echo(f"{chosen or 'default policy'}: ok ({len(loaded.groups)} groups, {len(loaded.tiers)} tiers)")


@policy.command("show-default")
def policy_show_default() -> None:
    """Print the documented default policy, to start your own from."""
    from workflows.policy import default_policy_text

    click.echo(default_policy_text(), nl=False)


# `steward export …` lives in its own module; it is registered here, once `main` exists.
from steward.export_cli import export  # noqa: E402

main.add_command(export)


# `steward audit …` too (the decision log's verify and anchors).
from steward.audit_cli import audit  # noqa: E402

main.add_command(audit)


# `steward report` (the governance report, in the terminal or as HTML).
from steward.report_cli import report  # noqa: E402

main.add_command(report)
