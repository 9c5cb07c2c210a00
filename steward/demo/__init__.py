"""`steward demo`: the whole stack against a sandbox Slack, playing a story a newcomer can watch.

The demo starts the real bot (HTTP), a Celery worker and the scheduler on embedded defaults (SQLite, the
file broker) in a fresh folder, puts the sandbox Slack in place of Slack with four colleagues in it, and
plays a story from registration to audit evidence, printing what each person did and saw.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console

from steward.demo.stack import DemoStack, start_stack
from steward.demo.story import CAST, CHANNELS, GROUPS, POLICY_CHANNELS, Story, sandbox_people
from steward.demo.transcript import Transcript
from workflows.errors import DomainError


class DemoFailed(DomainError):
    """The stack did not do what the story expected; the message says what, and where the logs are."""


def run_demo(*, serve: bool = False, home: Path | None = None, port: int | None = None,
             console: Console | None = None) -> int:
    """Play the story on a fresh stack; with `serve`, keep it running afterwards until Ctrl-C. Exit status."""
    console = console or Console(highlight=False)
    folder = home or Path(tempfile.mkdtemp(prefix="steward-demo-"))
    started = time.monotonic()
    console.print("[bold]Steward demo[/bold]: starting the bot, a worker and the scheduler on SQLite, "
                  f"with a sandbox Slack in place of Slack (in {folder})")
    try:
        stack = start_stack(folder, people=sandbox_people(), groups=GROUPS, channels=POLICY_CHANNELS, port=port)
    except (TimeoutError, RuntimeError) as problem:
        raise DemoFailed(f"the stack did not start: {problem}. Its logs are in {folder}") from None
    keep = serve or home is not None
    try:
        transcript = Transcript(stack.sandbox, CAST, console=console, channels=CHANNELS)
        try:
            Story(stack, transcript).play()
        except (TimeoutError, RuntimeError, LookupError) as problem:
            keep = True
            raise DemoFailed(f"the demo stopped: {problem}. The processes' logs are in {folder}") from None
        console.print()
        console.print(f"[bold green]Done[/bold green] in {time.monotonic() - started:.0f} s: "
                      f"{transcript.lines_shown} things shown in Slack, every one sent by the real stack.")
        if serve:
            _serve_until_interrupted(stack, transcript, console)
    finally:
        stack.stop()
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


def _serve_until_interrupted(stack: DemoStack, transcript: Transcript, console: Console) -> None:
    _write_connection_file(stack)
    people = ", ".join(f"{p.handle} ({p.user_id})" for p in CAST)
    console.print()
    console.print(f"The stack is still running: bot at {stack.bot_url}/slack/events, sandbox Slack at "
                  f"{stack.sandbox.url}, everything in {stack.home}.")
    console.print("Send your own signed commands as one of the cast, from another terminal:")
    console.print(f"    steward sandbox send --home {stack.home} --as maya '/steward mine'")
    console.print(f"    steward sandbox send --home {stack.home} --as dan '/steward search ranker'")
    console.print(f"People: {people}. What Slack would show them appears below. Ctrl-C stops everything.")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.is_set():
            if (name := stack.crashed()) is not None:
                console.print(f"[red]the {name} exited; stopping[/red]")
                break
            transcript.show_new()
            stop.wait(0.5)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _write_connection_file(stack: DemoStack) -> None:
    from steward.sandbox.remote import write_connection

    write_connection(stack.home, bot_url=stack.bot_url, responses_url=stack.sandbox.response_url(""), secret=stack.driver.secret,
                     people={p.handle: p.user_id for p in CAST})
