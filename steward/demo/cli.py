"""`steward demo` and `steward sandbox send`: watch Steward work without a Slack workspace."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from steward.errors import friendly_errors


@click.command()
@click.option("--serve", is_flag=True, help="Keep the stack and the sandbox running after the story, for your own "
                                            "commands (`steward sandbox send`), until Ctrl-C.")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the demo's database, broker, clock and logs (default: a fresh temporary folder, "
                   "removed afterwards unless --serve).")
@click.option("--port", type=int, default=None, help="Port for the bot (default: any free port).")
@friendly_errors()
def demo(serve: bool, home: Path | None, port: int | None) -> None:
    """Play a story on the real stack with a sandbox Slack: register, classify, request, deny, approve,
    expiry warning, review nudge, audit verify and export."""
    from steward.demo import run_demo

    if home is not None and home.exists() and any(home.iterdir()):
        raise click.ClickException(f"{home} is not empty: the demo starts from a fresh folder")
    sys.exit(run_demo(serve=serve, home=home, port=port))


@click.group()
def sandbox() -> None:
    """Talk to a running `steward demo --serve`."""


@sandbox.command("send")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The demo's folder, as `steward demo --serve` printed it.")
@click.option("--as", "handle", required=True, metavar="PERSON", help="Who types it: maya, dan, priya or sam.")
@click.argument("command")
@friendly_errors()
def sandbox_send(home: Path, handle: str, command: str) -> None:
    """Send COMMAND (e.g. '/steward mine') to the demo's bot, signed as Slack signs it.

    What Slack would then show appears in the demo's own terminal."""
    from steward.sandbox.remote import read_connection, send_command

    text = command.strip()
    if not text.startswith("/steward"):
        raise click.ClickException("only /steward commands go to Steward, e.g. '/steward mine'")
    try:
        response = send_command(read_connection(home), handle=handle, text=text.removeprefix("/steward").strip())
    except ValueError as problem:
        raise click.ClickException(str(problem)) from None
    if response.status_code != 200:
        raise click.ClickException(f"the bot answered HTTP {response.status_code}: {response.text[:200]}")
    click.echo(f"sent as {handle}: {text} (the demo's terminal shows the reply)")
