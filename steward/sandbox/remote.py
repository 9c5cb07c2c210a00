"""Reaching a running demo from another terminal: where its bot and sandbox are, and a signed command to it.

`steward demo --serve` writes `sandbox.json` into its folder (mode 0600: it holds the demo's own signing
secret); `steward sandbox send` reads it to sign a slash command exactly as Slack would and post it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import requests

from steward.sandbox import signing

CONNECTION_FILE = "sandbox.json"
CHANNEL = "C0GENERAL"


@dataclass(frozen=True)
class Connection:
    """A running demo: its bot, where its sandbox takes replies, its signing secret, its people (handle → id)."""

    bot_url: str
    responses_url: str
    secret: str
    people: dict[str, str]


def write_connection(home: Path, *, bot_url: str, responses_url: str, secret: str, people: dict[str, str]) -> Path:
    """Record how to reach the demo in `home`, readable only by its owner."""
    path = home / CONNECTION_FILE
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump({"bot_url": bot_url, "responses_url": responses_url, "secret": secret, "people": people}, handle)
    return path


def read_connection(home: Path) -> Connection:
    """How to reach the demo whose folder is `home`; ValueError saying what is wrong otherwise."""
    path = home / CONNECTION_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Connection(bot_url=data["bot_url"], responses_url=data["responses_url"], secret=data["secret"],
                          people=dict(data["people"]))
    except FileNotFoundError:
        raise ValueError(f"no running demo in {home}: start one with `steward demo --serve`") from None
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ValueError(f"{path} is not a demo connection file") from None


def send_command(connection: Connection, *, handle: str, text: str) -> requests.Response:
    """Post `/steward <text>` as `handle`, signed with the demo's secret; replies go to the sandbox."""
    user_id = connection.people.get(handle.lstrip("@"))
    if user_id is None:
        raise ValueError(f"nobody called {handle!r} here: choose {', '.join(sorted(connection.people))}")
    body, headers = signing.slash_command(text=text, secret=connection.secret, user_id=user_id, channel_id=CHANNEL,
                                          response_url=f"{connection.responses_url}cmd-{user_id}")
    try:
        return requests.post(f"{connection.bot_url}/slack/events", data=body.encode(), headers=headers, timeout=10)
    except requests.RequestException:
        raise ValueError(f"cannot reach the demo's bot at {connection.bot_url}: is `steward demo --serve` "
                         "still running?") from None
