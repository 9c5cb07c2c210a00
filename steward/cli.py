"""The `steward` command line: serve, worker, scheduler, dev, sweep, db and policy."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit, urlunsplit

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
@click.option("--port", default=3000, show_default=True,
              help="HTTP port for /slack/events, /healthz, /readyz and /metrics.")
@click.option("--host", default="0.0.0.0", show_default=True, help="Interface to listen on.")
@click.option("--workers", "-w", type=click.IntRange(min=1), default=2, show_default=True, envvar="WEB_CONCURRENCY",
              show_envvar=True, help="HTTP worker processes (HTTP mode only).")
@click.option("--threads", type=click.IntRange(min=1), default=8, show_default=True,
              help="Request threads in each worker process (HTTP mode only).")
@click.option("--graceful-timeout", type=click.IntRange(min=1), default=30, show_default=True,
              help="Seconds in-flight requests get to finish after SIGTERM (HTTP mode only).")
@friendly_errors()
def serve(port: int, host: str, workers: int, threads: int, graceful_timeout: int) -> None:
    """Run the Slack bot (Socket Mode when SLACK_APP_TOKEN is set, else HTTP at /slack/events)."""
    from steward import server

    settings = _settings()
    if not settings.socket_mode:
        # HTTP workers pool their metrics in a folder that must be chosen before prometheus_client is
        # imported, which importing the runtime does.
        server.use_multiprocess_metrics()
    from steward import runtime

    runtime.configure_logging(settings)
    runtime.require_slack_credentials(settings)
    engine = runtime.engine_for(settings)
    runtime.require_current_schema(engine)
    if settings.socket_mode:
        server.serve_socket_mode(runtime.build_bot(settings, engine), settings, host=host, port=port,
                                 engine=engine)
        return
    # The master only supervises; each worker opens its own pool after the fork.
    engine.dispose()
    server.serve_http(settings, host=host, port=port, workers=workers, threads=threads,
                      graceful_timeout=graceful_timeout)


def _health_options(default_port: int) -> Callable[[Callable], Callable]:
    """--health-host and --health-port, for the processes that serve only /healthz, /readyz and /metrics."""
    def decorate(command: Callable) -> Callable:
        command = click.option("--health-port", type=click.IntRange(min=0, max=65535), default=default_port,
                               show_default=True, help="Port for /healthz, /readyz and /metrics (0: none).")(command)
        return click.option("--health-host", default="0.0.0.0", show_default=True,
                            help="Interface the health port listens on.")(command)
    return decorate


@main.command()
@click.option("--concurrency", "-c", default=4, show_default=True, help="Tasks run at once.")
@click.option("--pool", default="threads", show_default=True, type=click.Choice(["threads", "prefork", "solo"]),
              help="How tasks run at once: threads in this process, forked child processes, or one at a time.")
@_health_options(8001)
@friendly_errors()
def worker(concurrency: int, pool: str, health_host: str, health_port: int) -> None:
    """Run the Celery worker that delivers Slack messages and runs the sweep."""
    from steward import runtime
    from workers.celery_app import make_celery
    from workers.health import process_health_app, serve_in_background

    settings = _settings()
    runtime.configure_logging(settings)
    engine = runtime.engine_for(settings)
    runtime.require_current_schema(engine)
    if health_port:
        serve_in_background(process_health_app(engine=engine, settings=settings), host=health_host,
                            port=health_port, name="worker")
    app = make_celery(settings)
    app.worker_main(["worker", f"--loglevel={settings.log_level.upper()}", f"--pool={pool}",
                     f"--concurrency={concurrency}", "--without-gossip", "--without-mingle",
                     "--hostname=steward@%h"])


@main.command()
@click.option("--interval", default=60, show_default=True, help="Seconds between sweeps.")
@_health_options(8002)
@friendly_errors()
def scheduler(interval: int, health_host: str, health_port: int) -> None:
    """Run the scheduler: the leader among its copies enqueues a sweep every minute."""
    from sqlalchemy.exc import SQLAlchemyError

    from steward import runtime
    from workers.celery_app import make_celery
    from workers.clock import clock_for
    from workers.health import process_health_app, serve_in_background
    from workers.scheduler import holds_lease, run_scheduler
    from workers.tasks import enqueue_sweep

    settings = _settings()
    runtime.configure_logging(settings)
    engine = runtime.engine_for(settings)
    runtime.require_current_schema(engine)
    make_celery(settings)
    holder, clock = runtime.holder_name(), clock_for(settings)
    if health_port:
        def leadership() -> list[str]:
            # Informational only: a standby copy is as healthy as the leader.
            try:
                leads = holds_lease(engine=engine, holder=holder, now=clock())
            except SQLAlchemyError:  # the database failed since readiness checked it
                return ["leader: unknown"]
            return [f"leader: {'yes' if leads else 'no (standby)'} ({holder})"]

        serve_in_background(process_health_app(engine=engine, settings=settings, notes=leadership),
                            host=health_host, port=health_port, name="scheduler")
    run_scheduler(engine=engine, enqueue_sweep=partial(enqueue_sweep, interval=interval), holder=holder,
                  clock=clock, interval=interval)


@main.command()
@click.argument("url")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=3.0, show_default=True,
              help="Seconds to wait for the answer.")
def probe(url: str, timeout: float) -> None:
    """GET URL: exit 0 on a 2xx answer, else say why in one line and exit 1 (for container health checks)."""
    import requests

    shown = _without_password(url)
    try:
        response = requests.get(url, timeout=timeout, allow_redirects=False)
    except requests.Timeout:
        _probe_failed(f"{shown} did not answer within {timeout:g}s")
    except requests.RequestException:
        _probe_failed(f"cannot connect to {shown}")
    if not 200 <= response.status_code < 300:
        reason = "; ".join(line.strip() for line in response.text.splitlines() if line.strip())
        _probe_failed(f"{shown} answered {response.status_code}" + (f": {reason[:500]}" if reason else ""))


def _probe_failed(message: str) -> NoReturn:
    click.echo(f"probe: {message}", err=True)
    sys.exit(1)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if not parts.password:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


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
        # The real sweep, rolled back before it enqueues: what it prints is exactly what a sweep
        # would enqueue now, and nothing is sent, claimed, marked or changed.
        counts = sweep_once(context=context, enqueue_due=lambda kind, item_id: None,
                            enqueue_delivery=lambda ids: None, enqueue_provision=lambda job_id: None, dry_run=True)
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
@click.option("--port", default=3000, show_default=True, help="HTTP port for the bot (health and, in HTTP "
                                                              "mode, /slack/events).")
@friendly_errors()
def dev(port: int) -> None:
    """Run bot, worker and scheduler together on embedded defaults; Ctrl-C stops them all.

    Without Slack credentials (SLACK_BOT_TOKEN in the environment or .env) this plays `steward demo`
    instead, against the sandbox Slack."""
    from steward import devrun

    settings = _settings()
    if not settings.slack_bot_token.get_secret_value():
        from steward.demo import run_demo

        click.echo("No SLACK_BOT_TOKEN is set, so here is the demo against a sandbox Slack. To connect a "
                   "workspace, see README: Connecting a Slack workspace.")
        sys.exit(run_demo())
    sys.exit(devrun.run_all(settings, port=port))


@main.group()
def db() -> None:
    """Database schema commands: migrate up or down, and show the current revision."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True,
              help="Migration to stop at (`head` is the newest this version of Steward ships).")
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
    """Policy file commands: validate a policy, or print the documented default."""


@policy.command("check")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@friendly_errors()
def policy_check(path: Path | None) -> None:
    """Validate the policy file PATH (default: STEWARD_POLICY, or the packaged default)."""
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


# `steward doctor` (checks an installation end to end and says what to fix).
from steward.doctor import doctor  # noqa: E402

main.add_command(doctor)


# `steward demo` and `steward sandbox send` (the sandbox Slack, for trying Steward without a workspace).
from steward.demo.cli import demo, sandbox  # noqa: E402

main.add_command(demo)
main.add_command(sandbox)
