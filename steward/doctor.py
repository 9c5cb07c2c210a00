"""`steward doctor`: checks an installation end to end and says what to fix.

It checks the scopes the bot needs (bot.scopes.BOT_SCOPES; a test proves that
slack-manifest.yml asks for exactly these). Checks run in order (configuration, database, broker,
Slack token, scopes, policy), and each prints one line: `✓ name: what was found`, or
`✗ name: the problem — what to do`. A check that cannot run without an earlier one says it was
skipped. Every network check has a short timeout, so doctor never hangs. Secret values are never
printed: only the names of the variables that hold them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import click
from pydantic import ValidationError

from bot.scopes import BOT_SCOPES
from workflows.settings import Settings

# The bot token scopes Steward calls need (slack-manifest.yml's oauth_config.scopes.bot).
BOT_TOKEN_PREFIXES = ("xoxb-", "xoxe.xoxb-")  # the second is a rotating bot token
APP_TOKEN_PREFIX = "xapp-"
DEFAULT_TIMEOUT = 3.0

# What to do about the auth.test errors a misconfigured install meets.
_TOKEN_FIXES = {
    "invalid_auth": "copy the Bot User OAuth Token (xoxb-…) from OAuth & Permissions into SLACK_BOT_TOKEN",
    "not_authed": "set SLACK_BOT_TOKEN to the Bot User OAuth Token (xoxb-…) from OAuth & Permissions",
    "account_inactive": "the app was uninstalled or its workspace or bot user deactivated: reinstall the app "
                        "and put the new Bot User OAuth Token in SLACK_BOT_TOKEN",
    "token_revoked": "reinstall the app to the workspace and put the new Bot User OAuth Token in SLACK_BOT_TOKEN",
    "token_expired": "the rotating token expired: reinstall the app, or turn token rotation off in its settings",
}


@dataclass(frozen=True)
class Finding:
    """One line of doctor's report: a check passed (ok), failed (with a fix), or was skipped (ok is None)."""

    name: str
    ok: bool | None
    detail: str
    fix: str = ""

    def line(self) -> str:
        """The line as printed: mark, name, what was found and, for a failure, what to do."""
        mark = {True: click.style("✓", fg="green"), False: click.style("✗", fg="red"), None: "-"}[self.ok]
        text = f"skipped: {self.detail}" if self.ok is None else self.detail
        return f"{mark} {self.name}: {text}" + (f" — {self.fix}" if self.fix else "")


def run_checks(*, timeout: float = DEFAULT_TIMEOUT) -> Iterator[Finding]:
    """Every check in order, as each finishes (settings that cannot be read skip the rest)."""
    try:
        settings = Settings()
    except ValidationError as exc:
        names = ", ".join(".".join(str(part) for part in error["loc"]).upper() for error in exc.errors())
        yield Finding("configuration", False, f"cannot read {names}", "fix or unset the variable(s) named")
        return
    except (OSError, UnicodeError) as exc:
        yield Finding("configuration", False, f"cannot read .env ({type(exc).__name__})",
                      "make .env a readable UTF-8 file, or remove it")
        return
    yield from check_configuration(settings)
    yield check_database(settings, timeout=timeout)
    yield check_broker(settings, timeout=timeout)
    token, granted = check_slack_token(settings, timeout=timeout)
    yield token
    # The scopes come from auth.test's answer: without one, say why there is nothing to compare.
    skipped = token.detail if token.ok is None else None if token.ok else "auth.test failed"
    yield check_scopes(granted, skipped=skipped)
    yield check_policy(settings)


def check_configuration(settings: Settings) -> Iterator[Finding]:
    """The mode Steward will run in, and whether that mode's secrets are set and of the right type."""
    mode = "Socket Mode" if settings.socket_mode else "HTTP mode"
    bot_token = settings.slack_bot_token.get_secret_value()
    app_token = settings.slack_app_token.get_secret_value()
    problems: list[tuple[str, str]] = []
    if not bot_token:
        problems.append(("SLACK_BOT_TOKEN is not set",
                         "set it to the Bot User OAuth Token (xoxb-…) from OAuth & Permissions"))
    elif not bot_token.startswith(BOT_TOKEN_PREFIXES):
        problems.append(_wrong_bot_token(bot_token))
    if not settings.slack_signing_secret.get_secret_value():
        # `steward serve` needs it in both modes (Bolt verifies every HTTP request with it).
        problems.append((f"{mode} needs SLACK_SIGNING_SECRET, which is not set",
                         "copy the Signing Secret from Basic Information → App Credentials into it"))
    if app_token and not app_token.startswith(APP_TOKEN_PREFIX):
        problems.append(("SLACK_APP_TOKEN is not an app-level token (xapp-…)",
                         ("create one with connections:write under Basic Information → App-Level Tokens, "
                          "or unset SLACK_APP_TOKEN to serve HTTP")))
    if problems:
        for problem, fix in problems:
            yield Finding("configuration", False, problem, fix)
        return
    how = "Slack connects over a WebSocket" if settings.socket_mode else "Slack posts to /slack/events"
    yield Finding("configuration", True, f"{mode} ({how}); database {_kind(settings.resolved_database_url)}, "
                                         f"broker {_kind(settings.resolved_broker_url)}")


def check_database(settings: Settings, *, timeout: float = DEFAULT_TIMEOUT) -> Finding:
    """The database answers within `timeout` and its schema is at the newest migration."""
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from workers.health import check_database as database_problem
    from workflows.db import make_engine
    from workflows.schema import current_revision, head_revision

    try:
        engine = make_engine(settings.resolved_database_url)
    except (ArgumentError, ValueError) as exc:
        return Finding("database", False, f"DATABASE_URL is not a usable database URL ({type(exc).__name__})",
                       "use postgresql://user:password@host:5432/name or sqlite:///path/steward.db")
    except OSError as exc:
        return Finding("database", False, f"cannot create the SQLite file's folder ({exc.strerror})",
                       "point DATABASE_URL or STEWARD_HOME at a writable folder")
    try:
        problem = database_problem(engine, timeout=timeout)
        if problem:
            return Finding("database", False, problem.removeprefix("database: "),
                           "check DATABASE_URL and that the database server is running and reachable")
        current, head = current_revision(engine), head_revision()
    except SQLAlchemyError as exc:
        return Finding("database", False, f"cannot read the schema version ({type(exc).__name__})",
                       "check that DATABASE_URL's user may read the database")
    finally:
        engine.dispose()
    if current != head:
        return Finding("database", False, f"the schema is at {current or 'nothing (an empty database)'}, "
                                          f"not {head}", "run `steward db upgrade`")
    return Finding("database", True, f"{engine.dialect.name} answers, schema at {head}")


def check_broker(settings: Settings, *, timeout: float = DEFAULT_TIMEOUT) -> Finding:
    """The broker answers within `timeout` (the embedded file broker: its folders are writable)."""
    from workers.health import check_broker as broker_problem

    kind = _kind(settings.resolved_broker_url)
    problem = broker_problem(settings, timeout=timeout)
    if problem is None:
        return Finding("broker", True, f"{kind} answers")
    if kind == "embedded file broker":
        fix = "start `steward worker` once (it creates the folders), and check STEWARD_HOME is writable"
    else:
        fix = "check BROKER_URL and that the broker (Redis) is running and reachable"
    return Finding("broker", False, problem.removeprefix("broker: "), fix)


def check_slack_token(settings: Settings, *, timeout: float = DEFAULT_TIMEOUT
                      ) -> tuple[Finding, frozenset[str] | None]:
    """`auth.test` with the bot token: who the bot is, and the scopes Slack says the token has."""
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    token = settings.slack_bot_token.get_secret_value()
    if not token:
        return Finding("slack token", None, "no SLACK_BOT_TOKEN"), None
    if not token.startswith(BOT_TOKEN_PREFIXES):
        return Finding("slack token", None, "SLACK_BOT_TOKEN is not a bot token"), None
    # No retries: doctor reports an outage at once rather than waiting it out.
    client = WebClient(token=token, base_url=settings.slack_api_url, timeout=timeout, retry_handlers=[])
    try:
        answer = client.auth_test()
    except SlackApiError as exc:
        return Finding("slack token", False, *_slack_problem(exc.response)), None
    except Exception as exc:  # noqa: BLE001 - any transport failure (refused, timeout, TLS) reads the same
        return Finding("slack token", False, f"cannot reach Slack at {_public_url(settings.slack_api_url)} "
                                             f"({type(exc).__name__})",
                       "check the network or proxy, and SLACK_API_URL if it is set"), None
    bot = f"bot @{answer.get('user')} ({answer.get('user_id')}) in {answer.get('team')} ({answer.get('team_id')})"
    return Finding("slack token", True, bot), _granted_scopes(answer.headers)


def check_scopes(granted: frozenset[str] | None, *, skipped: str | None = None) -> Finding:
    """The scopes the bot needs (BOT_SCOPES) against those Slack says its token has."""
    if skipped:
        return Finding("scopes", None, skipped)
    if granted is None:
        return Finding("scopes", False, "Slack did not say which scopes the token has (no X-OAuth-Scopes header)",
                       "check that SLACK_API_URL points at Slack's Web API")
    missing = [scope for scope in BOT_SCOPES if scope not in granted]
    if missing:
        return Finding("scopes", False, f"the token lacks {', '.join(missing)}",
                       "add them under OAuth & Permissions → Bot Token Scopes and reinstall the app")
    return Finding("scopes", True, f"all {len(BOT_SCOPES)} the bot needs are granted")


def check_policy(settings: Settings) -> Finding:
    """The policy file loads and validates, and its webhook connectors' secrets are set here."""
    from workflows.errors import DomainError
    from workflows.policy import load_policy

    source = str(settings.steward_policy) if settings.steward_policy else "the packaged default"
    try:
        loaded = load_policy(settings.steward_policy)
    except DomainError as exc:
        return Finding("policy", False, str(exc), "fix the file (`steward policy check` re-checks it; "
                                                  "`steward policy show-default` prints the documented default)")
    unset = [f"{connector.secret_env} (connector '{name}')" for name, connector in loaded.connectors.items()
             if connector.secret_env and not os.environ.get(connector.secret_env)]
    if unset:
        return Finding("policy", False, f"webhook signing secret not set: {', '.join(unset)}",
                       "export it wherever `steward worker` runs")
    return Finding("policy", True, f"{source} ({len(loaded.groups)} groups, {len(loaded.tiers)} tiers)")


@click.command("doctor")
@click.option("--timeout", default=DEFAULT_TIMEOUT, show_default=True, type=click.FloatRange(min=0.1, max=60),
              metavar="SECONDS", help="How long each network check (database, broker, Slack) may take.")
def doctor(timeout: float) -> None:
    """Check the configuration, database, broker, Slack token and scopes, and policy; say what to fix."""
    failed = 0
    for finding in run_checks(timeout=timeout):
        click.echo(finding.line())
        failed += finding.ok is False
    if failed:
        click.echo(f"{failed} problem(s) found.")
        raise SystemExit(1)
    click.echo("All checks passed.")


def _wrong_bot_token(token: str) -> tuple[str, str]:
    # Only the prefix is shown: it names the token's type and gives nothing of the secret away.
    if token.startswith(APP_TOKEN_PREFIX):
        return ("SLACK_BOT_TOKEN holds an app-level token (xapp-…)",
                "move it to SLACK_APP_TOKEN and set SLACK_BOT_TOKEN to the Bot User OAuth Token (xoxb-…)")
    kind = "a user token (xoxp-…)" if token.startswith("xoxp-") else "not a bot token"
    return (f"SLACK_BOT_TOKEN is {kind}",
            "set it to the Bot User OAuth Token (xoxb-…) from OAuth & Permissions")


def _kind(url: str) -> str:
    # The scheme only: a URL may carry a password.
    scheme = urlsplit(url).scheme.split("+")[0]
    return "embedded file broker" if scheme == "filesystem" else scheme or "unknown"


def _public_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"


def _slack_problem(response) -> tuple[str, str]:
    # An HTTP error (429, 5xx) is Slack's side or a proxy's; an `error` in a 200 answer is about the token.
    if response.status_code != 200:
        return (f"auth.test answered HTTP {response.status_code}",
                "Slack is rate limiting or unavailable: try again in a minute (https://slack-status.com)")
    data = response.data if isinstance(response.data, dict) else {}
    error = str(data.get("error") or "an unexpected answer")
    return (f"auth.test answered {error}",
            _TOKEN_FIXES.get(error, f"see https://api.slack.com/methods/auth.test for `{error}`"))


def _granted_scopes(headers) -> frozenset[str] | None:
    for name, value in (headers or {}).items():
        if name.lower() == "x-oauth-scopes":
            return frozenset(scope.strip() for scope in value.split(",") if scope.strip())
    return None
