"""A database that cannot be reached gets a clear answer in Slack, and a form keeps its input."""

import pytest
from slack_sdk import WebClient

from bot.app import create_app
from bot.context import BotContext
from bot.listeners.common import SLACK_SILENT, answer_errors
from bot.views.forms import problems_shown
from tests.bot.conftest import SECRET, TOKEN, Harness
from workers.directory import Directory
from workflows.db import make_engine
from workflows.settings import Settings

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/nowhere"


@pytest.fixture
def down(fake, bot_policy, now) -> Harness:
    """The app wired to a database that refuses connections."""
    settings = Settings(slack_bot_token=TOKEN, slack_signing_secret=SECRET, slack_api_url=fake.url)
    client = WebClient(token=TOKEN, base_url=fake.url)
    ctx = BotContext(settings=settings, engine=make_engine(UNREACHABLE), policy=bot_policy,
                     directory=Directory(client), enqueue_delivery=lambda ids: None, clock=lambda: now)
    return Harness(app=create_app(ctx, client=client), fake=fake, ctx=ctx)


def test_a_command_says_the_database_is_unreachable(down):
    down.command("asset fraud-scorer")
    reply = down.last_reply_text()
    assert "The database cannot be reached" in reply and "Traceback" not in reply


def test_a_submission_gives_the_form_back_with_the_reason(down):
    down.command("register dataset")
    shown = down.submit(down.opened_view(), {"name": "Churn events", "description": "Typed before the outage"})
    assert "The database cannot be reached" in problems_shown(shown)["name"]
    description = next(b for b in shown["blocks"] if b.get("block_id") == "description")
    assert description["element"]["initial_value"] == "Typed before the outage"  # nothing typed is lost


def test_slack_not_answering_a_listeners_call_is_a_polite_retry_not_a_traceback(caplog):
    replies = []

    def open_modal_in_time() -> None:
        raise TimeoutError("timed out")  # what urllib raises when Slack does not answer views.open in time

    answer_errors(lambda **reply: replies.append(reply), open_modal_in_time)
    assert [r["text"] for r in replies] == [SLACK_SILENT] and replies[0]["response_type"] == "ephemeral"
    assert not [r for r in caplog.records if r.levelname == "ERROR" or r.exc_info], caplog.text
