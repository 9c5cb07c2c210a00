"""Steward in Socket Mode: a real `steward serve` with SLACK_APP_TOKEN connects to the sandbox's Socket Mode
server and works there as over HTTP: commands, modals, clicks and events, and a refresh it survives."""

import json

import pytest
import requests

from bot.ids import Action
from steward.sandbox.driver import find_element
from steward.sandbox.slack_api import DEFAULT_APP_TOKEN
from tests.bot.conftest import block_action, submission
from tests.e2e.conftest import CHANNEL, STARTUP_SECONDS, Stack, wait_for
from tests.factories import OWNER

pytestmark = pytest.mark.e2e


@pytest.fixture
def socket_stack(make_stack) -> Stack:
    """The stack with the bot in Socket Mode (its /healthz still on its --port), once it has connected."""
    stack = make_stack(env={"SLACK_APP_TOKEN": DEFAULT_APP_TOKEN})
    stack.fake.start_socket_mode().wait_for_connection(timeout=STARTUP_SECONDS)
    return stack


def replies(stack: Stack, name: str) -> list[dict]:
    """What the bot posted to the response_url called `name`, oldest first."""
    return [call.args for call in stack.fake.calls_to("response_url") if call.name == name]


def test_commands_modals_clicks_and_events_over_socket_mode(socket_stack):
    stack, fake = socket_stack, socket_stack.fake
    socket = fake.start_socket_mode()

    # Health checks still reach the process; Slack's requests no longer come over HTTP.
    assert requests.get(f"{stack.base_url}/healthz", timeout=5).status_code == 200
    assert requests.post(f"{stack.base_url}/slack/events", timeout=5).status_code == 404
    # The bot asked for its WebSocket URL with the app-level token, never with the bot token.
    assert {call.token for call in fake.calls_to("apps.connections.open")} == {DEFAULT_APP_TOKEN}

    # A slash command opens the registration modal (views.open, with the command's trigger_id).
    assert socket.slash_command("register dataset", user_id=OWNER, channel_id=CHANNEL) is None
    form = wait_for(fake.views_opened, what="the register modal")[-1]
    assert fake.last("views.open").args["trigger_id"]

    # An invalid submission is refused in the ack itself, and nothing is saved.
    ack = socket.interactive(submission(form, {"name": "Churn events", "location_uri": "not a uri"}, user=OWNER))
    assert ack == {"response_action": "errors", "errors": {"location_uri": "A URI cannot contain spaces."}}
    assert stack.sql("SELECT count(*) FROM asset") == [(0,)]

    # A valid one is acked with "Saving…", saved after the ack, and the modal then says so; the worker
    # delivers the confirmation from the outbox.
    ack = socket.interactive(submission(form, {
        "name": "Churn events", "team": "Growth", "sensitivity": "restricted", "contains_personal_data": ["yes"],
        "location_uri": "s3://lake/churn"}, user=OWNER))
    assert ack["response_action"] == "update" and "Saving *Churn events*" in json.dumps(ack["view"])
    saved = wait_for(lambda: fake.view(form["id"])["hash"] != form["hash"] and fake.view(form["id"]),
                     what="the modal updated once saved")
    assert saved["title"]["text"] == "Registered"
    assert stack.sql("SELECT slug, owner_id, team FROM asset") == [("churn-events", OWNER, "Growth")]
    stack.wait_delivered()
    confirmation = fake.last("chat.postEphemeral").args
    assert confirmation["user"] == OWNER and "churn-events" in json.dumps(confirmation)

    # A click on the card's Edit button opens the edit form, filled in.
    socket.slash_command("asset churn-events", user_id=OWNER, channel_id=CHANNEL)
    card = wait_for(lambda: replies(stack, "cmd-asset"), what="the asset card")[-1]
    _, edit = find_element(card, Action.EDIT_ASSET)
    click = block_action(Action.EDIT_ASSET, edit["value"], user=OWNER, response_url=fake.response_url("click"))
    assert socket.interactive(click) is None
    edit_form = wait_for(lambda: fake.views_opened()[1:], what="the edit modal")[-1]
    assert "Churn events" in json.dumps(edit_form)

    # An event: opening the App Home draws it, listing the new asset.
    assert socket.event({"type": "app_home_opened", "user": OWNER, "channel": f"D{OWNER}", "tab": "home"}) is None
    home = wait_for(lambda: fake.home(OWNER), what="the App Home")
    assert "churn-events" in json.dumps(home)

    # Slack asks for a refresh: the bot reconnects on a fresh URL and keeps answering.
    connected = len(socket.connections)
    assert socket.request_reconnect() == 1
    socket.wait_for_connection(after=connected, timeout=STARTUP_SECONDS)
    socket.slash_command("help", user_id=OWNER, channel_id=CHANNEL)
    help_reply = wait_for(lambda: replies(stack, "cmd-help"), what="the help reply")[-1]
    assert "/steward register" in json.dumps(help_reply)
    assert len(fake.calls_to("apps.connections.open")) == 2
    # Nothing went wrong out of sight (a listener error in Socket Mode only reaches the log).
    assert "Traceback" not in stack.log("bot") and "ERROR" not in stack.log("bot")

    # A supervisor stops it (SIGTERM): the bot closes its socket, so Slack stops sending to it, and exits 0.
    bot = stack.processes[0]
    bot.terminate()
    assert bot.wait(timeout=30) == 0, stack.log("bot")[-2000:]
    wait_for(lambda: not any(connection.open for connection in socket.connections), what="the socket to close")
