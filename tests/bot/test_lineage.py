"""`/steward lineage` through signed requests, and the impact notice as delivery would send it."""

from __future__ import annotations

import json
from datetime import timedelta

from slack_sdk import WebClient

from tests.bot.conftest import CHANNEL, TOKEN, outbox, rendered
from tests.factories import OTHER, OWNER, classify_system, edit_asset, make_asset
from workflows.db import transaction
from workflows.enums import AccessLevel, AssetKind, EdgeType, GrantStatus, RequestStatus
from workflows.models import AccessRequest, Asset, Edge, Grant

THIRD = "U0THIRD1"


def _slack_accepts(harness, message: dict) -> None:
    """Post the message to the fake Slack, which refuses over 50 blocks or a text over 3000 characters."""
    client = WebClient(token=TOKEN, base_url=harness.fake.url)
    assert client.chat_postMessage(channel=CHANNEL, text=message["text"], blocks=message["blocks"])["ok"]


def _within_limits(message: dict) -> None:
    assert len(message["blocks"]) <= 50
    for block in message["blocks"]:
        texts = [block["text"]] if "text" in block else block.get("elements", [])
        for text in texts:
            if isinstance(text, dict) and "text" in text and isinstance(text["text"], str):
                assert len(text["text"]) <= 3000


def _fraud(engine, policy, now):
    data = make_asset(engine, policy=policy, now=now, name="Loan history", owner_id=OTHER, actor=OTHER,
                      sensitivity="restricted", contains_personal_data=True, license="CC-BY-4.0")
    raw = make_asset(engine, policy=policy, now=now, name="Raw loans", owner_id=THIRD, actor=THIRD)
    edit_asset(engine, data, policy=policy, now=now, actor=OTHER, lineage={"derived_from": [raw.id]})
    model = make_asset(engine, policy=policy, now=now, kind="model", name="Fraud scorer",
                       lineage={"trained_on": [data.id]})
    system = make_asset(engine, policy=policy, now=now, kind="system", name="Loan approval",
                        lineage={"uses": [model.id]})
    return data, raw, model, system


def test_lineage_up_shows_each_dataset_with_owner_sensitivity_personal_data_and_license(harness, engine,
                                                                                          bot_policy, now):
    _fraud(engine, bot_policy, now)
    harness.command("lineage fraud-scorer")
    reply = harness.replies()[-1]
    assert reply["response_type"] == "ephemeral"
    text = json.dumps(reply, ensure_ascii=False)
    assert "*Lineage up* of" in text and "`fraud-scorer`" in text
    history = next(line for b in reply["blocks"] if b["type"] == "section"
                   for line in b["text"]["text"].split("\n") if "`loan-history`" in line)
    assert "_trained on_" in history and f"<@{OTHER}>" in history
    assert "Restricted" in history and "*personal data*" in history and "license CC-BY-4.0" in history
    raw = next(line for b in reply["blocks"] if b["type"] == "section"
               for line in b["text"]["text"].split("\n") if "`raw-loans`" in line)
    assert "_derived from_" in raw and "Internal · no personal data · license none recorded" in raw
    # deeper is indented further
    assert len(raw) - len(raw.lstrip("\u2003")) > len(history) - len(history.lstrip("\u2003"))
    assert "loan-approval" not in text.split("See the other way")[0]
    assert "/steward lineage fraud-scorer down" in text
    _within_limits(reply)


def test_lineage_down_shows_what_depends_on_it(harness, engine, bot_policy, now):
    _, _, _, system = _fraud(engine, bot_policy, now)
    classify_system(engine, system, "high", policy=bot_policy, now=now)
    harness.command("lineage raw-loans down")
    text = harness.last_reply_text()
    assert "*Lineage down* of" in text
    assert text.index("loan-history") < text.index("fraud-scorer") < text.index("loan-approval")
    assert "_source of_" in text and "_used to train_" in text and "_used by_" in text
    assert ":red_circle: High" in text
    # either order of words, and "--down" too
    harness.command("lineage down raw-loans")
    assert "*Lineage down*" in harness.last_reply_text()
    harness.command("lineage raw-loans --down")
    assert "*Lineage down*" in harness.last_reply_text()


def test_lineage_with_nothing_recorded_says_so(harness, engine, bot_policy, now):
    make_asset(engine, policy=bot_policy, now=now, name="Alone")
    harness.command("lineage alone")
    assert "Nothing recorded upstream" in harness.last_reply_text()
    harness.command("lineage alone down")
    assert "Nothing recorded depends on it" in harness.last_reply_text()


def test_an_unknown_slug_suggests_the_closest(harness, engine, bot_policy, now):
    _fraud(engine, bot_policy, now)
    harness.command("lineage fraud-scorr")
    reply = harness.last_reply_text()
    assert "No asset is called `fraud-scorr`" in reply and "`fraud-scorer`" in reply


def test_missing_or_extra_words_get_the_usage(harness):
    for text in ("lineage", "lineage up", "lineage a b", "lineage a up down"):
        harness.command(text)
        assert "Which asset, and which way?" in harness.last_reply_text()
    harness.command("help")
    assert "/steward lineage &lt;slug&gt; [up|down]" in harness.last_reply_text() or \
        "/steward lineage <slug> [up|down]" in harness.last_reply_text()


def test_user_text_in_the_tree_is_escaped(harness, engine, bot_policy, now):
    data = make_asset(engine, policy=bot_policy, now=now, name="<!channel> & data", slug="noisy-data",
                      license="<https://evil.example|click>")
    make_asset(engine, policy=bot_policy, now=now, kind="model", name="Quiet model",
               lineage={"trained_on": [data.id]})
    harness.command("lineage quiet-model")
    text = harness.last_reply_text()
    assert "<!channel>" not in text and "<https://evil" not in text
    assert "&lt;!channel&gt; &amp; data" in text and "&lt;https://evil.example|click&gt;" in text


def _bulk_graph(engine, now, *, levels: int = 7, width: int = 50, fan_out: int = 20) -> None:
    """A wide, deep graph written straight to the tables: `width` datasets per level, each derived from
    `fan_out` of the next level, with long names full of characters that escaping lengthens."""
    with transaction(engine) as session:
        rows: list[list[Asset]] = []
        for level in range(levels):
            rows.append([Asset(slug=f"l{level}-{i:02d}", kind=AssetKind.DATASET, name="&<>" * 50,
                               license="<" * 100, owner_id=OWNER, created_by=OWNER, created_at=now,
                               updated_at=now, details={}, contains_personal_data=bool(i % 2))
                         for i in range(1 if level == 0 else width)])
            session.add_all(rows[-1])
        session.flush()
        for level in range(levels - 1):
            for i, source in enumerate(rows[level]):
                for j in range(fan_out):
                    target = rows[level + 1][(i + j) % width]
                    session.add(Edge(source_id=source.id, target_id=target.id, type=EdgeType.DERIVED_FROM,
                                     created_by=OWNER, created_at=now))


def test_a_large_graph_stays_within_slack_limits(harness, engine, now):
    _bulk_graph(engine, now)
    harness.command("lineage l0-00")
    reply = harness.replies()[-1]
    _within_limits(reply)
    _slack_accepts(harness, reply)
    text = json.dumps(reply, ensure_ascii=False)
    assert "…and 5 more" in text  # the root has 20 children: 15 shown
    assert "1 more level not shown" in text  # seven levels: the root, five shown, one more
    assert "more lines did not fit" in text or len(reply["blocks"]) < 50


def test_the_impact_notice_renders_from_state_and_slack_accepts_it(harness, engine, bot_policy, now):
    data = make_asset(engine, policy=bot_policy, now=now, name="Claims <2024> & co")
    model = make_asset(engine, policy=bot_policy, now=now, kind="model", name="Claims model", owner_id=OTHER,
                       actor=OTHER, lineage={"trained_on": [data.id]})
    system = make_asset(engine, policy=bot_policy, now=now, kind="system", name="Claims triage",
                        owner_id=OTHER, actor=OTHER, lineage={"uses": [model.id]})
    classify_system(engine, system, "high", policy=bot_policy, now=now, actor=OTHER)
    with transaction(engine) as session:
        request = AccessRequest(asset_id=model.id, requester_id="U0ANALYST1", level=AccessLevel.READ,
                                duration_hours=24, justification="x", status=RequestStatus.APPROVED,
                                created_at=now)
        session.add(request)
        session.flush()
        session.add(Grant(request_id=request.id, asset_id=model.id, grantee_id="U0ANALYST1",
                          level=AccessLevel.READ, status=GrantStatus.ACTIVE, granted_at=now,
                          expires_at=now + timedelta(days=3)))
    edit_asset(engine, data, policy=bot_policy, now=now, contains_personal_data=True,
               sensitivity="restricted")
    (row,) = outbox(engine, template="impact_notice")
    assert row.user == OTHER
    message = rendered(engine, row)
    text = json.dumps(message, ensure_ascii=False)
    assert f"<@{OWNER}> marked" in text
    assert "*personal data*" in text and "*restricted* (was internal)" in text
    assert "Claims &lt;2024&gt; &amp; co" in text and "<2024>" not in text
    assert "`claims-model`" in text and "`claims-triage`" in text
    assert "<@U0ANALYST1> (read)" in text and "1 to recertify" in text
    assert "queued for recertification" in text
    assert "2 assets of yours were built from it" in text
    _slack_accepts(harness, message)
