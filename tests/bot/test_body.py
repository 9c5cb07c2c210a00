"""Reading request bodies (bot/listeners/body.py): what Bolt would read, the `payload` word, and cleaning."""

import json
from urllib.parse import parse_qsl, quote, unquote_plus, urlencode

from hypothesis import example, given, settings
from hypothesis import strategies as st
from slack_bolt.request.internals import parse_body
from sqlmodel import select

from bot.app import wsgi_app
from bot.listeners.body import percent_decode, read_body, read_form
from bot.listeners.guard import clean_text
from steward.sandbox import signing
from tests.bot.conftest import CHANNEL, SECRET, submission
from tests.factories import OWNER
from tests.security.test_fuzzing import post
from workflows.db import transaction
from workflows.models import Asset

FORM = signing.FORM_CONTENT_TYPE
# Text as an attacker's client could send it: any code point, lone surrogates included.
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
# Raw bodies built from the characters URL encoding is made of, and those it should not hold.
RAW = st.lists(st.sampled_from(list("%+=&\\ab0Fx9 é\x00") + ["%2", "%4g", "%C3%A9", "%C3", "%5Cu0000", "%ZZ"]),
               max_size=30).map("".join)


def encoded(text: str) -> str:
    """Percent-encode text as a form would, lone surrogates as the invalid UTF-8 they become."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


@settings(max_examples=400, derandomize=True)
@given(RAW)
@example("%e9")  # a byte that is not UTF-8 on its own: replaced, as urllib does
@example("a\\x41%41")  # a backslash already in the text is not read as an escape
def test_percent_decoding_matches_urllib_on_any_text(text):
    assert percent_decode(text) == unquote_plus(text)


@settings(max_examples=200, derandomize=True)
@given(ANY_TEXT)
def test_percent_decoding_matches_urllib_on_what_forms_encode(text):
    assert percent_decode(encoded(text)) == unquote_plus(encoded(text))


@settings(max_examples=300, derandomize=True)
@given(RAW)
def test_form_fields_match_parse_qsl(text):
    assert read_form(text) == dict(parse_qsl(text, keep_blank_values=True))


def test_an_interaction_body_reads_as_bolt_reads_it():
    payload = {"type": "view_submission", "user": {"id": "U1"}, "note": "café & \"quotes\" + 100% / \\ ✓"}
    body, _ = signing.interaction(payload, secret=SECRET)
    assert read_body(body, FORM)[0] == parse_body(body, FORM) == payload
    assert read_body(json.dumps(payload), "application/json")[0] == payload


def test_a_command_mentioning_payload_keeps_its_fields():
    # Bolt takes any form body with the letters "payload" in it for an interaction and reads it as {}.
    body = urlencode({"command": "/steward", "text": "search payload", "user_id": "U1"})
    assert parse_body(body, FORM) == {}
    assert read_body(body, FORM) == ({"command": "/steward", "text": "search payload", "user_id": "U1"}, False)


@settings(max_examples=300, derandomize=True)
@given(st.dictionaries(ANY_TEXT, st.one_of(ANY_TEXT, st.lists(ANY_TEXT, max_size=3)), max_size=4))
def test_a_body_said_to_be_clean_needs_no_cleaning(fields):
    # Whatever a payload holds, read_body flags it whenever cleaning would change anything.
    interaction = "payload=" + encoded(json.dumps(fields))
    command = urlencode({k: v for k, v in fields.items() if isinstance(v, str)}, encoding="utf-8",
                        errors="surrogatepass")
    for raw in (interaction, command, json.dumps(fields)):
        content_type = "application/json" if raw.startswith("{") else FORM
        body, unclean = read_body(raw, content_type)
        if not unclean:
            assert clean_text(json.loads(json.dumps(body))) == body, raw


def test_nul_and_lone_surrogates_are_flagged():
    assert read_body("payload=" + encoded(json.dumps({"name": "a\x00b"})), FORM)[1] is True
    for lone in ("\ud800", "\udbff", "\udc00", "\udfff"):
        assert read_body("payload=" + encoded(json.dumps({"name": lone})), FORM)[1] is True, lone
    assert read_body("text=a%00b", FORM) == ({"text": "a\x00b"}, True)
    assert read_body("payload=" + encoded(json.dumps({"name": "plain"})), FORM)[1] is False
    # Other escapes (Slack's JSON escapes every non-ASCII character) need no walk.
    assert read_body("payload=" + encoded(json.dumps({"name": "café \u2713", "url": "a\\/b"})), FORM)[1] is False
    assert read_body(json.dumps({"name": "\ud83d\ude00"}), "application/json")[1] is True  # a pair: walked


# -- through the HTTP entry point ----------------------------------------------------------------


def test_searching_for_the_word_payload_is_answered(harness):
    body, _ = signing.slash_command(text="search payload", secret=SECRET, user_id=OWNER, channel_id=CHANNEL,
                                    response_url=harness.fake.response_url("cmd"))
    status, _ = post(wsgi_app(harness.app), body.encode(), FORM)
    assert status == 200
    assert "payload" in harness.last_reply_text()


def test_a_nul_in_a_submitted_name_is_removed_before_the_save(harness, engine):
    harness.command("register model")
    view = harness.opened_view()
    payload = submission(view, {"name": "Churn\x00 model", "location_uri": "s3://models/churn",
                                "details.task": "classification"}, user=OWNER)
    status, answer = post(wsgi_app(harness.app), ("payload=" + encoded(json.dumps(payload))).encode(), FORM)
    assert status == 200 and json.loads(answer)["response_action"] == "update"
    with transaction(engine) as session:
        names = session.exec(select(Asset.name)).all()
    assert names == ["Churn model"]
