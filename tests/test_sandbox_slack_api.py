"""Tests of the fake Slack Web API and the request-signing helper."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs

import pytest
from slack_bolt import App, BoltRequest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient

from steward.sandbox import signing
from steward.sandbox.slack_api import BOT_SCOPES, FakeSlack

SECRET = "test-signing-secret"


@pytest.fixture
def fake():
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def client(fake):
    # No retry handlers, so rate limits and outages surface to the test.
    return WebClient(token="xoxb-test", base_url=fake.url, retry_handlers=[])


def section(text: str, block_id: str | None = None) -> dict:
    block = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
    if block_id is not None:
        block["block_id"] = block_id
    return block


def modal(blocks: list[dict], title: str = "Steward") -> dict:
    return {"type": "modal", "title": {"type": "plain_text", "text": title}, "blocks": blocks}


def api_error(call) -> SlackApiError:
    with pytest.raises(SlackApiError) as excinfo:
        call()
    return excinfo.value


# -- server basics -----------------------------------------------------------


def test_url_points_at_loopback_api(fake):
    assert fake.url == f"http://127.0.0.1:{fake.port}/api/"
    assert fake.response_url("cmd") == f"http://127.0.0.1:{fake.port}/response/cmd"


def test_stop_releases_the_server():
    fake = FakeSlack().start()
    client = WebClient(token="xoxb-test", base_url=fake.url, retry_handlers=[])
    assert client.auth_test()["ok"] is True
    fake.stop()
    with pytest.raises(OSError):
        client.auth_test()


def test_auth_test_describes_the_bot(fake, client):
    response = client.auth_test()

    assert response["team_id"] == "T0001"
    assert response["user_id"] == "UBOT"
    assert response["bot_id"] == "B0001"
    assert response["url"].startswith("https://")
    assert (response["team"], response["user"]) == ("Steward Test", "steward")
    call = fake.last("auth.test")
    assert call.token == "xoxb-test"
    assert call.headers["Authorization"] == "Bearer xoxb-test"
    assert call.failed is False


def test_calls_are_recorded_in_order_with_json_args(fake, client):
    blocks = [section("hello")]
    client.chat_postMessage(channel="C1", text="hi", blocks=blocks)
    client.conversations_open(users="U1")

    assert [call.method for call in fake.calls] == ["chat.postMessage", "conversations.open"]
    assert fake.last("chat.postMessage").args == {"channel": "C1", "text": "hi", "blocks": blocks}
    assert fake.calls_to("conversations.open")[0].args == {"users": "U1"}


def test_json_strings_in_form_data_are_decoded(fake, client):
    blocks = [section("from a form")]
    client.api_call("chat.postMessage", params={"channel": "C1", "blocks": json.dumps(blocks)})

    assert fake.last("chat.postMessage").args["blocks"] == blocks


def test_token_may_come_as_an_argument(fake):
    anonymous = WebClient(base_url=fake.url, retry_handlers=[])
    anonymous.api_call("auth.test", params={"token": "xoxb-test"})

    call = fake.last("auth.test")
    assert call.token == "xoxb-test"
    assert "token" not in call.args


def test_last_without_a_call_explains_itself(fake, client):
    client.auth_test()

    with pytest.raises(AssertionError, match=r"no call to 'chat.update'.*auth.test"):
        fake.last("chat.update")


def test_reset_clears_calls_and_queued_failures(fake, client):
    client.auth_test()
    fake.fail_next("auth.test", status=500)

    fake.reset()

    assert fake.calls == []
    assert client.auth_test()["ok"] is True


def test_unknown_method_answers_200_unknown_method(client):
    error = api_error(lambda: client.api_call("steward.nonsense"))

    assert error.response.status_code == 200
    assert error.response["error"] == "unknown_method"


def test_answers_carry_the_tokens_granted_scopes(fake, client):
    assert client.auth_test().headers["X-OAuth-Scopes"] == ",".join(BOT_SCOPES)

    fake.grant_scopes(["chat:write", "commands"])

    assert client.chat_postMessage(channel="C1", text="hi").headers["X-OAuth-Scopes"] == "chat:write,commands"
    # Errors answered to a known token carry them too; an unknown token has no scopes to list.
    assert api_error(lambda: client.users_info(user="UNOBODY")).response.headers["X-OAuth-Scopes"] == (
        "chat:write,commands")
    stranger = WebClient(token="xoxb-wrong", base_url=fake.url, retry_handlers=[])
    assert "X-OAuth-Scopes" not in api_error(stranger.auth_test).response.headers


def test_socket_mode_is_refused_for_bot_tokens(client):
    error = api_error(lambda: client.apps_connections_open(app_token="xoxb-test"))

    assert error.response["error"] == "not_allowed_token_type"


# -- messages ----------------------------------------------------------------


def test_post_message_returns_unique_increasing_ts(fake, client):
    responses = [client.chat_postMessage(channel="C1", text=f"m{i}") for i in range(5)]
    stamps = [response["ts"] for response in responses]

    assert len(set(stamps)) == 5
    assert stamps == sorted(stamps, key=float)
    assert all(len(ts.split(".")[1]) == 6 for ts in stamps)
    assert responses[0]["channel"] == "C1"
    assert responses[0]["message"]["text"] == "m0"
    assert responses[0]["message"]["bot_id"] == "B0001"


def test_ts_stays_unique_under_concurrent_posts(fake, client):
    def post(i: int) -> str:
        return client.chat_postMessage(channel="C1", text=str(i))["ts"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        stamps = list(pool.map(post, range(40)))

    assert len(set(stamps)) == 40
    assert len(fake.calls_to("chat.postMessage")) == 40
    assert len(fake.messages("C1")) == 40


def test_chat_update_changes_the_stored_message(fake, client):
    first = client.chat_postMessage(channel="C1", text="pending", blocks=[section("pending")])
    client.chat_postMessage(channel="C2", text="elsewhere")

    updated = client.chat_update(channel="C1", ts=first["ts"], text="approved")

    assert updated["ts"] == first["ts"]
    assert updated["text"] == "approved"
    [message] = fake.messages(channel="C1")
    assert message["text"] == "approved"
    assert message["blocks"] == [section("pending")]  # left out of the update, so kept
    assert [m["channel"] for m in fake.messages()] == ["C1", "C2"]


def test_chat_update_of_unknown_message_fails(client):
    error = api_error(lambda: client.chat_update(channel="C1", ts="1.000000", text="x"))

    assert error.response["error"] == "message_not_found"


def test_chat_delete_removes_the_message(fake, client):
    posted = client.chat_postMessage(channel="C1", text="bye")

    client.chat_delete(channel="C1", ts=posted["ts"])

    assert fake.messages("C1") == []


def test_post_ephemeral_returns_message_ts(fake, client):
    response = client.chat_postEphemeral(channel="C1", user="U1", text="only you")

    assert response["message_ts"]
    assert fake.last("chat.postEphemeral").args["user"] == "U1"
    assert fake.messages() == []


# -- views ----------------------------------------------------------------------


def test_views_open_echoes_the_view_with_an_id_and_hash(fake, client):
    submitted = modal([section("hi")]) | {"callback_id": "register", "private_metadata": "42"}

    view = client.views_open(trigger_id="1337.42.abc", view=submitted)["view"]

    assert view["id"] == "V0001"
    assert view["hash"]
    assert view["callback_id"] == "register"
    assert view["private_metadata"] == "42"
    assert view["blocks"] == submitted["blocks"]
    assert [v["id"] for v in fake.views_opened()] == ["V0001"]


def test_views_update_keeps_the_view_id(fake, client):
    opened = client.views_open(trigger_id="t", view=modal([section("one")]))["view"]

    updated = client.views_update(view_id=opened["id"], view=modal([section("two")]))["view"]

    assert updated["id"] == opened["id"]
    assert updated["hash"] != opened["hash"]
    assert fake.views_opened()[0]["blocks"] == [section("two")]


def test_views_push_gets_a_new_id(client):
    opened = client.views_open(trigger_id="t", view=modal([section("one")]))["view"]

    pushed = client.views_push(trigger_id="t2", view=modal([section("two")]))["view"]

    assert pushed["id"] != opened["id"]


def test_views_publish_sets_the_users_home(fake, client):
    home = {"type": "home", "blocks": [section("welcome")]}

    view = client.views_publish(user_id="U1", view=home)["view"]

    assert view["type"] == "home"
    assert fake.home("U1")["blocks"] == home["blocks"]
    assert fake.home("U2") is None


# -- users and conversations -------------------------------------------------------


def test_users_info_for_a_known_user(fake, client):
    fake.add_user("U1", name="ada", real_name="Ada Lovelace", tz="America/New_York", tz_offset=-18000)

    user = client.users_info(user="U1")["user"]

    assert user["id"] == "U1"
    assert user["real_name"] == "Ada Lovelace"
    assert user["is_bot"] is False
    assert user["deleted"] is False
    assert user["tz"] == "America/New_York"
    assert user["tz_offset"] == -18000
    assert user["tz_label"]
    assert user["profile"] == {"display_name": "ada", "real_name": "Ada Lovelace"}


def test_users_info_for_the_bot(client):
    user = client.users_info(user="UBOT")["user"]

    assert user["is_bot"] is True


def test_users_info_for_an_unknown_user(fake, client):
    error = api_error(lambda: client.users_info(user="UNOBODY"))

    assert error.response["error"] == "user_not_found"
    assert fake.last("users.info").failed is True


def test_usergroup_members(fake, client):
    fake.add_usergroup("S0001", ["U1", "U2"])

    assert client.usergroups_users_list(usergroup="S0001")["users"] == ["U1", "U2"]
    assert api_error(lambda: client.usergroups_users_list(usergroup="S9")).response["error"] == (
        "no_such_subteam"
    )


def test_conversations_open_gives_a_dm_channel(client):
    assert client.conversations_open(users="U1")["channel"]["id"] == "DU1"


# -- failures -----------------------------------------------------------------------


def test_invalid_token_is_rejected(fake):
    stranger = WebClient(token="xoxb-wrong", base_url=fake.url, retry_handlers=[])

    error = api_error(lambda: stranger.chat_postMessage(channel="C1", text="hi"))

    assert error.response["error"] == "invalid_auth"
    assert fake.last("chat.postMessage").failed is True
    assert fake.messages() == []


def test_rate_limit_then_success(fake, client):
    fake.fail_next("chat.postMessage", retry_after=7)

    error = api_error(lambda: client.chat_postMessage(channel="C1", text="hi"))
    retried = client.chat_postMessage(channel="C1", text="hi")

    assert error.response.status_code == 429
    assert error.response.headers["Retry-After"] == "7"
    assert error.response["error"] == "ratelimited"
    assert retried["ok"] is True
    assert [call.failed for call in fake.calls_to("chat.postMessage")] == [True, False]


def test_server_error_for_a_number_of_calls(fake, client):
    fake.fail_next("users.info", status=500, times=2)

    statuses = [api_error(lambda: client.users_info(user="UBOT")).response.status_code for _ in range(2)]

    assert statuses == [500, 500]
    assert client.users_info(user="UBOT")["ok"] is True


def test_failures_only_hit_their_method(client, fake):
    fake.fail_next("chat.postMessage", status=503)

    assert client.auth_test()["ok"] is True
    assert api_error(lambda: client.chat_postMessage(channel="C1", text="x")).response.status_code == 503


def test_fail_next_with_an_error_name(fake, client):
    fake.fail_next("auth.test", error="invalid_auth")

    error = api_error(client.auth_test)

    assert error.response.status_code == 200
    assert error.response["error"] == "invalid_auth"


# -- Block Kit limits -----------------------------------------------------------------


def test_message_block_limit(fake, client):
    client.chat_postMessage(channel="C1", text="ok", blocks=[section(str(i)) for i in range(50)])

    error = api_error(
        lambda: client.chat_postMessage(channel="C1", text="x", blocks=[section(str(i)) for i in range(51)])
    )

    assert error.response["error"] == "invalid_blocks"
    assert "no more than 50 items" in error.response["errors"][0]
    assert fake.last("chat.postMessage").failed is True
    assert len(fake.messages()) == 1


def test_update_obeys_the_message_block_limit(client):
    posted = client.chat_postMessage(channel="C1", text="x")

    error = api_error(
        lambda: client.chat_update(channel="C1", ts=posted["ts"], text="x", blocks=[section("b")] * 51)
    )

    assert error.response["error"] == "invalid_blocks"


def test_view_block_limit(client):
    client.views_open(trigger_id="t", view=modal([section(str(i)) for i in range(100)]))

    error = api_error(
        lambda: client.views_open(trigger_id="t", view=modal([section(str(i)) for i in range(101)]))
    )

    assert error.response["error"] == "invalid_blocks"


def test_block_text_limit(client):
    client.chat_postMessage(channel="C1", text="ok", blocks=[section("a" * 3000)])

    error = api_error(lambda: client.chat_postMessage(channel="C1", text="x", blocks=[section("a" * 3001)]))

    assert error.response["error"] == "invalid_blocks"
    assert "/blocks/0/text/text" in error.response["errors"][0]


def test_nested_text_limit_in_a_view(client):
    context = {"type": "context", "elements": [{"type": "mrkdwn", "text": "a" * 3001}]}

    error = api_error(lambda: client.views_publish(user_id="U1", view={"type": "home", "blocks": [context]}))

    assert error.response["error"] == "invalid_blocks"
    assert "/view/blocks/0/elements/0/text" in error.response["errors"][0]


def test_top_level_text_limit(client):
    error = api_error(lambda: client.chat_postMessage(channel="C1", text="a" * 3001))

    assert error.response["error"] == "msg_too_long"


def test_duplicate_block_ids_are_rejected(fake, client):
    blocks = [section("one", block_id="same"), section("two", block_id="same")]

    error = api_error(lambda: client.chat_postMessage(channel="C1", text="x", blocks=blocks))

    assert error.response["error"] == "invalid_blocks"
    assert "duplicate block_id" in error.response["errors"][0]
    assert fake.last("chat.postMessage").args["blocks"] == blocks


def test_blocks_need_a_type(client):
    error = api_error(lambda: client.chat_postMessage(channel="C1", text="x", blocks=[{"text": "no type"}]))

    assert error.response["error"] == "invalid_blocks"


def test_modal_title_limit(client):
    client.views_open(trigger_id="t", view=modal([], title="a" * 24))

    error = api_error(lambda: client.views_open(trigger_id="t", view=modal([], title="a" * 25)))

    assert error.response["error"] == "invalid_arguments"


# -- response_url --------------------------------------------------------------------------


def test_response_url_posts_are_recorded(fake):
    response = WebhookClient(fake.response_url("cmd-1")).send(text="done", response_type="ephemeral")

    assert response.status_code == 200
    call = fake.last("response_url")
    assert call.name == "cmd-1"
    assert call.args == {"text": "done", "response_type": "ephemeral"}


# -- signing ---------------------------------------------------------------------------------


def test_sign_matches_slack_sdk():
    headers = signing.sign("a=b", secret=SECRET, timestamp=1_700_000_000)

    expected = SignatureVerifier(SECRET).generate_signature(timestamp="1700000000", body="a=b")
    assert headers == {"X-Slack-Request-Timestamp": "1700000000", "X-Slack-Signature": expected}


@pytest.mark.parametrize(
    "build",
    [
        lambda: signing.slash_command(text="list", secret=SECRET),
        lambda: signing.interaction({"type": "block_actions"}, secret=SECRET),
        lambda: signing.event(signing.event_callback({"type": "app_home_opened"}), secret=SECRET),
    ],
    ids=["slash_command", "interaction", "event"],
)
def test_built_requests_verify(build):
    body, headers = build()
    timestamp, signature = headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]

    assert SignatureVerifier(SECRET).is_valid(body, timestamp, signature)
    assert not SignatureVerifier("wrong-secret").is_valid(body, timestamp, signature)
    assert not SignatureVerifier(SECRET).is_valid(body + "x", timestamp, signature)


def test_default_timestamp_is_now():
    _, headers = signing.event({"type": "url_verification"}, secret=SECRET)

    assert abs(int(headers["X-Slack-Request-Timestamp"]) - time.time()) < 60


def test_request_bodies_have_slacks_shapes():
    command_body, command_headers = signing.slash_command(
        "/steward", "list", secret=SECRET, user_id="U9", response_url="http://x/response/r"
    )
    interaction_body, interaction_headers = signing.interaction({"type": "view_submission"}, secret=SECRET)
    event_body, event_headers = signing.event({"type": "event_callback"}, secret=SECRET)

    command = parse_qs(command_body)
    assert command["command"] == ["/steward"]
    assert command["text"] == ["list"]
    assert command["user_id"] == ["U9"]
    assert command["response_url"] == ["http://x/response/r"]
    assert command_headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert json.loads(parse_qs(interaction_body)["payload"][0]) == {"type": "view_submission"}
    assert interaction_headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert json.loads(event_body) == {"type": "event_callback"}
    assert event_headers["Content-Type"] == "application/json"


def test_bolt_accepts_a_signed_command_and_talks_to_the_fake(fake, client):
    app = App(token="xoxb-test", signing_secret=SECRET, client=client, process_before_response=True)

    @app.command("/steward")
    def handle(ack, respond, say, command):
        ack()
        respond(f"got {command['text']}")
        say("posted")

    body, headers = signing.slash_command(text="list", secret=SECRET, response_url=fake.response_url("cmd"))
    response = app.dispatch(BoltRequest(body=body, headers=headers))
    _, bad_headers = signing.slash_command(text="list", secret="wrong")
    rejected = app.dispatch(BoltRequest(body=body, headers=bad_headers))

    assert response.status == 200
    assert fake.last("response_url").args["text"] == "got list"
    assert fake.messages("C123")[0]["text"] == "posted"
    assert rejected.status == 401


# -- rate limits (opt-in, on an injected clock) ---------------------------------------------------


class Ticker:
    """A clock in seconds that moves only when the test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limited(clock: Ticker, **limits):
    fake = FakeSlack(clock=clock).start()
    fake.enforce_rate_limits(**limits)
    return fake, WebClient(token="xoxb-test", base_url=fake.url, retry_handlers=[])


def test_rate_limits_are_off_by_default(client, fake):
    for _ in range(5):
        client.chat_postMessage(channel="C1", text="hi")
    assert not fake.rate_limited() and len(fake.messages("C1")) == 5


def test_one_message_a_second_per_channel():
    clock = Ticker()
    fake, client = limited(clock, per_channel_per_second=1)
    try:
        client.chat_postMessage(channel="C1", text="first")
        error = api_error(lambda: client.chat_postMessage(channel="C1", text="too soon"))
        assert error.response.status_code == 429
        assert error.response.data["error"] == "ratelimited"
        assert error.response.headers["Retry-After"] == "1"
        # Another channel is not held up; the refused post is not recorded as a message.
        client.chat_postMessage(channel="C2", text="elsewhere")
        assert [m["text"] for m in fake.messages("C1")] == ["first"]

        clock.now += 0.5
        assert api_error(lambda: client.chat_postMessage(channel="C1", text="still")).response.status_code == 429
        clock.now += 0.5
        client.chat_postMessage(channel="C1", text="after a second")
        assert [m["text"] for m in fake.messages("C1")] == ["first", "after a second"]

        refused = fake.rate_limited()
        assert [(c.args["text"], c.retry_after, c.at) for c in refused] == [
            ("too soon", 1, 1000.0), ("still", 1, 1000.5)]
        assert all(c.failed for c in refused)
        # Other methods are not limited.
        client.chat_update(channel="C1", ts=fake.messages("C1")[0]["ts"], text="edited")
        client.chat_update(channel="C1", ts=fake.messages("C1")[0]["ts"], text="edited again")
    finally:
        fake.stop()


def test_the_workspace_budget_per_minute():
    clock = Ticker()
    fake, client = limited(clock, per_channel_per_second=None, workspace_per_minute=3)
    try:
        for i in range(3):
            client.chat_postMessage(channel=f"D{i}", text="hi")
            clock.now += 10
        error = api_error(lambda: client.chat_postMessage(channel="D9", text="over budget"))
        # The first post (at 1000) leaves the window at 1060; it is now 1030.
        assert error.response.status_code == 429 and error.response.headers["Retry-After"] == "30"
        clock.now += 29
        assert api_error(lambda: client.chat_postMessage(channel="D9", text="x")).response.headers[
            "Retry-After"] == "1"
        clock.now += 1
        client.chat_postMessage(channel="D9", text="in budget again")
        assert fake.messages("D9")[0]["text"] == "in budget again"
    finally:
        fake.stop()


def test_both_limits_answer_the_longer_wait():
    clock = Ticker()
    fake, client = limited(clock, per_channel_per_second=1, workspace_per_minute=1)
    try:
        client.chat_postMessage(channel="C1", text="hi")
        assert api_error(lambda: client.chat_postMessage(channel="C1", text="x")).response.headers[
            "Retry-After"] == "60"
    finally:
        fake.stop()
