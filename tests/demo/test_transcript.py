"""The demo's transcript reads the sandbox's record faithfully: names for mentions, one line per field row,
the same DM to several people once, and only what changed when a message is redrawn."""

from __future__ import annotations

from rich.console import Console
from slack_sdk import WebClient

from steward.demo.transcript import Person, Transcript, message_lines, mrkdwn_markup
from steward.sandbox.slack_api import DEFAULT_TOKEN, FakeSlack

ANA = Person("U0ANA0001", "ana", "Ana", "owner")
BO = Person("U0BO00001", "bo", "Bo", "approver")


def transcript_of(sandbox: FakeSlack) -> tuple[Transcript, Console]:
    console = Console(record=True, width=200, color_system=None)
    return Transcript(sandbox, (ANA, BO), console=console, channels={"C0AUDIT01": "ai-audit"}), console


def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def test_mentions_links_and_entities_read_as_a_person_sees_them():
    with FakeSlack() as sandbox:
        transcript, _ = transcript_of(sandbox)
        lines = message_lines({"blocks": [section("<@U0ANA0001> asks <#C0AUDIT01> &lt;x&gt; <https://e.x|the card>")]},
                              transcript._plain)
    assert lines == ["@ana asks #ai-audit <x> the card"]


def test_mrkdwn_becomes_markup_and_user_text_cannot_inject_markup():
    assert mrkdwn_markup("*Risk* `cv-ranker` _soon_") == "[bold]Risk[/bold] [cyan]cv-ranker[/cyan] [italic]soon[/italic]"
    assert mrkdwn_markup("[red]boom[/red]") == "\\[red]boom\\[/red]"


def test_fields_of_a_section_read_as_one_line():
    message = {"blocks": [{"type": "section", "fields": [{"type": "mrkdwn", "text": "*Tier*\nHigh"},
                                                         {"type": "mrkdwn", "text": "*Owner*\n<@U0ANA0001>"}]}]}
    with FakeSlack() as sandbox:
        transcript, _ = transcript_of(sandbox)
        assert message_lines(message, transcript._plain) == ["*Tier* High   *Owner* @ana"]


def test_the_same_dm_to_two_people_prints_once_and_a_redraw_prints_only_what_changed():
    with FakeSlack() as sandbox:
        client = WebClient(token=DEFAULT_TOKEN, base_url=sandbox.url)
        transcript, console = transcript_of(sandbox)
        button = {"type": "actions", "elements": [{"type": "button", "action_id": "approve",
                                                   "text": {"type": "plain_text", "text": "Approve"}}]}
        posted = []
        for person in (ANA, BO):
            channel = client.conversations_open(users=person.user_id)["channel"]["id"]
            posted.append(client.chat_postMessage(channel=channel, text="Request #1",
                                                  blocks=[section("Request #1 for *use*"), button]))
        assert transcript.show_new() == 1
        client.chat_update(channel=posted[0]["channel"], ts=posted[0]["ts"], text="Request #1 (approved)",
                           blocks=[section("Request #1 for *use*"), section("Approved by <@U0BO00001>")])
        assert transcript.show_new() == 1
    text = console.export_text()
    assert "the same DM to Ana (owner), Bo (approver)" in text
    assert text.count("Request #1 for use") == 1, "the redraw repeats only what changed"
    assert "redrawn in the DM to Ana (owner)" in text and "Approved by @bo" in text
    assert " Approve " in text


def test_plumbing_calls_and_failed_calls_are_not_shown():
    with FakeSlack() as sandbox:
        client = WebClient(token=DEFAULT_TOKEN, base_url=sandbox.url)
        transcript, _ = transcript_of(sandbox)
        client.auth_test()
        sandbox.add_user(ANA.user_id, name="ana")
        client.users_info(user=ANA.user_id)
        assert transcript.show_new() == 0
