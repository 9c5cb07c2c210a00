"""The demo's transcript: what each person did, and what each saw, read from the sandbox Slack's record.

Every line under a person's action is drawn from a Web API call the real stack made to the sandbox (a
DM, an ephemeral reply, a modal, a redrawn message), so the transcript cannot show anything Steward did
not actually send.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.rule import Rule

from steward.sandbox.slack_api import Call, FakeSlack

MAX_LINES_PER_MESSAGE = 6
MAX_LINE_CHARS = 160
MAX_FORM_LABELS = 6
# Calls that are plumbing rather than something a person sees.
UNSEEN_METHODS = frozenset({"auth.test", "users.info", "conversations.open", "usergroups.users.list",
                            "views.publish", "files.getUploadURLExternal", "upload"})
POSTED_DM = "💬 DM to "
REDRAWN_DM = "✏️  redrawn in the DM to "
_LINK = re.compile(r"<([^<>|]+)\|([^<>]+)>")
_BARE_LINK = re.compile(r"<(https?://[^<>|]+)>")
_USER = re.compile(r"<@([UW][A-Z0-9]+)>")
_CHANNEL = re.compile(r"<#([CG][A-Z0-9]+)(?:\|([^<>]*))?>")
_SPECIAL = re.compile(r"<!(here|channel|everyone)(?:\|[^<>]*)?>")


@dataclass(frozen=True)
class Person:
    """Someone in the sandbox workspace."""

    user_id: str
    handle: str
    name: str
    role: str


class Transcript:
    """Prints the story: a heading per scene, each action, and what the sandbox received since the last look."""

    def __init__(self, sandbox: FakeSlack, people: tuple[Person, ...], *, console: Console | None = None,
                 channels: dict[str, str] | None = None) -> None:
        self.sandbox = sandbox
        self.people = {person.user_id: person for person in people}
        self.channels = channels or {}
        self.console = console or Console(highlight=False)
        self._seen = 0
        self._posted: dict[tuple[str, str], list[str]] = {}  # (channel, ts) → lines as last shown
        self._posts: dict[str, int] = {}  # channel → posts to it seen so far
        self.lines_shown = 0

    def scene(self, title: str) -> None:
        """Start a new part of the story."""
        self.console.print()
        self.console.print(Rule(f"[bold]{escape(title)}[/bold]", align="left", style="cyan"))

    def note(self, text: str) -> None:
        """A narrator's aside (time moving on, what happens behind the scenes)."""
        self.console.print(f"[dim italic]{escape(text)}[/dim italic]")

    def did(self, user_id: str, what: str) -> None:
        """A person's action: a command typed, a button clicked, a form submitted."""
        self.console.print(f"[bold green]▶ {escape(self.name(user_id))}[/bold green] {escape(what)}")

    def output(self, text: str) -> None:
        """Lines printed by a command the demo ran (audit verify, export)."""
        for line in text.strip().splitlines():
            self.console.print(f"    [white]{escape(line)}[/white]")

    def show_new(self, *, actor: str | None = None) -> int:
        """Print what Slack was asked to show since the last call (replies to `actor` by default); how many.

        Messages with the same content in one batch (the same DM to three approvers) print once, with
        everyone who got it; a redrawn message prints only what changed."""
        calls = self.sandbox.calls[self._seen:]
        self._seen += len(calls)
        shown: list[tuple[list[str], str]] = []  # (headings, body) in order of first appearance
        for call in calls:
            if call.failed or call.method in UNSEEN_METHODS:
                continue
            described = self._describe(call, actor)
            if described is None:
                continue
            heading, body = described
            same = next((entry for entry in shown if entry[1] == body and body), None)
            if same is not None:
                same[0].append(heading)
            else:
                shown.append(([heading], body))
        for headings, body in shown:
            self.console.print(f"    [cyan]{escape(_together(headings))}[/cyan]" + (f"\n{body}" if body else ""))
        self.lines_shown += len(shown)
        return len(shown)

    def skip_to_now(self) -> None:
        """Forget what the sandbox received so far (setup the reader need not see)."""
        self._seen = len(self.sandbox.calls)

    def name(self, user_id: str | None) -> str:
        """How a person is called in the transcript."""
        person = self.people.get(user_id or "")
        return f"{person.name} ({person.role})" if person else (user_id or "someone")

    # -- one call to one line -----------------------------------------------------------------------

    def _describe(self, call: Call, actor: str | None) -> tuple[str, str] | None:
        args = call.args
        if call.method in ("views.open", "views.push"):
            return self._view(args.get("view") or {}, actor)
        if call.method == "chat.postMessage":
            where = self._where(str(args.get("channel", "")))
            return f"💬 {where}", self._body(args, key=self._key(args))
        if call.method == "chat.postEphemeral":
            return f"👁  only {self.name(args.get('user'))} sees", self._body(args)
        if call.method == "chat.update":
            where = self._where(str(args.get("channel", "")))
            return f"✏️  redrawn in the {where}", self._body(args, key=self._key(args), changes_only=True)
        if call.method == "response_url":
            user = (call.name or "").rsplit("-", 1)[-1] or actor
            return f"👁  only {self.name(user)} sees", self._body(args)
        if call.method == "files.completeUploadExternal":
            return f"📎 a file is shared in {self._where(str(args.get('channel_id', '')))}", ""
        return None  # views.update and the like: a modal redrawn while open; its answer says the rest

    def _key(self, args: dict[str, Any]) -> tuple[str, str] | None:
        """Which message a post or an update is: (channel, ts). A post's ts is Slack's answer, which the
        sandbox keeps with the message; posts to a channel are its messages in order."""
        channel, ts = str(args.get("channel", "")), args.get("ts")
        if ts:
            return channel, str(ts)
        index = self._posts.get(channel, 0)
        self._posts[channel] = index + 1
        messages = self.sandbox.messages(channel=channel)
        return (channel, messages[index]["ts"]) if index < len(messages) else None

    def _where(self, channel: str) -> str:
        if channel.startswith("D") and channel[1:] in self.people:
            return f"DM to {self.name(channel[1:])}"
        if channel in self.people:
            return f"DM to {self.name(channel)}"
        return f"#{self.channels.get(channel, channel)}"

    def _view(self, view: dict[str, Any], actor: str | None) -> tuple[str, str]:
        title = (view.get("title") or {}).get("text", "a form")
        labels = [(b.get("label") or {}).get("text", "") for b in view.get("blocks", []) if b.get("type") == "input"]
        labels = [label for label in labels if label]
        asks = ", ".join(labels[:MAX_FORM_LABELS]) + (", …" if len(labels) > MAX_FORM_LABELS else "")
        return f"🪟 {self.name(actor)} sees the form “{title}”", f"       [dim]asks for: {escape(asks)}[/dim]"

    def _body(self, message: dict[str, Any], *, key: tuple[str, str] | None = None,
              changes_only: bool = False) -> str:
        lines = message_lines(message, self._plain)
        if key is not None:
            before, self._posted[key] = self._posted.get(key), lines
            if changes_only and before is not None:
                lines = [line for line in lines if line not in before] or ["(its buttons are gone)"]
        body = [f"       {mrkdwn_markup(line)}" for line in lines[:MAX_LINES_PER_MESSAGE]]
        if len(lines) > MAX_LINES_PER_MESSAGE:
            body.append("       …")
        controls = controls_of(message)
        if controls:
            body.append("       " + " ".join(f"[reverse] {escape(c)} [/reverse]" for c in controls))
        return "\n".join(body)

    def _plain(self, mrkdwn: str) -> str:
        """mrkdwn as a person reads it: mentions as names, links as their labels, entities decoded."""
        text = _USER.sub(lambda m: "@" + (self.people[m[1]].handle if m[1] in self.people else m[1]), mrkdwn)
        text = _CHANNEL.sub(lambda m: "#" + (m[2] or self.channels.get(m[1], m[1])), text)
        text = _SPECIAL.sub(lambda m: "@" + m[1], text)
        text = _LINK.sub(lambda m: m[2], text)
        text = _BARE_LINK.sub(lambda m: m[1], text)
        return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def message_lines(message: dict[str, Any], plain) -> list[str]:
    """The readable lines of a message: its blocks' texts, else its fallback text."""
    texts: list[str] = []
    for block in message.get("blocks") or []:
        kind = block.get("type")
        if kind in ("header", "section") and isinstance(block.get("text"), dict):
            texts.append(block["text"].get("text", ""))
        if kind == "section" and block.get("fields"):
            # Fields are label/value pairs side by side: one line, as the eye reads them.
            texts.append("   ".join(" ".join(f.get("text", "").split()) for f in block["fields"]))
        if kind == "context":
            texts.extend(e.get("text", "") for e in block.get("elements") or [] if isinstance(e, dict))
    if not texts:
        texts = [str(message.get("text") or "")]
    lines = []
    for text in texts:
        for line in plain(text).splitlines():
            line = line.strip()
            if line:
                lines.append(line if len(line) <= MAX_LINE_CHARS else line[: MAX_LINE_CHARS - 1] + "…")
    return lines


_BOLD = re.compile(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])")
_ITALIC = re.compile(r"(?<![\w_])_([^_\n]+)_(?![\w_])")
_CODE = re.compile(r"`([^`\n]+)`")


def mrkdwn_markup(line: str) -> str:
    """One line of Slack's mrkdwn as rich markup (bold, italic, code), with everything else escaped."""
    markup = escape(line)
    markup = _CODE.sub(lambda m: f"[cyan]{m[1]}[/cyan]", markup)
    markup = _BOLD.sub(lambda m: f"[bold]{m[1]}[/bold]", markup)
    return _ITALIC.sub(lambda m: f"[italic]{m[1]}[/italic]", markup)


def _together(headings: list[str]) -> str:
    """Headings of the same message sent to several people, as one heading."""
    if len(headings) == 1:
        return headings[0]
    for prefix, plural in ((POSTED_DM, "💬 the same DM to "), (REDRAWN_DM, "✏️  redrawn the same way in the DMs of ")):
        if all(h.startswith(prefix) for h in headings):
            return plural + ", ".join(h.removeprefix(prefix) for h in headings)
    return "; ".join(headings)


def controls_of(message: dict[str, Any]) -> list[str]:
    """The labels of the buttons and menus on a message, as a person sees them."""
    labels = []
    for block in message.get("blocks") or []:
        for element in [*(block.get("elements") or []), block.get("accessory") or {}]:
            if not isinstance(element, dict):
                continue
            if element.get("type") == "button":
                labels.append((element.get("text") or {}).get("text", "button"))
            elif element.get("type") == "overflow":
                labels.append("⋯ " + " / ".join((o.get("text") or {}).get("text", "") for o in element["options"]))
    return labels
