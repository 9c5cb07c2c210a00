"""Slack's request payloads (slash commands, interactions, events), and signed HTTP requests carrying them.

The payload builders (`command_payload`, `event_callback`) are shared by both transports: over HTTP each
signed builder returns `(body, headers)` signed exactly as Slack signs requests, so Bolt's request
verification accepts them; over Socket Mode (`steward.sandbox.socket_mode`) the same payloads travel
unsigned inside envelopes.

    body, headers = slash_command(text="list", secret=SECRET,
                                  response_url=fake.response_url("cmd"))
    app.dispatch(BoltRequest(body=body, headers=headers))
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
JSON_CONTENT_TYPE = "application/json"

# Port 9 (discard) on loopback refuses connections, so a test that forgets to
# pass a fake response_url fails fast instead of posting to real Slack.
UNSET_RESPONSE_URL = "http://127.0.0.1:9/response/unset"


def sign(body: str, *, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """Slack's signature headers for `body`: v0= HMAC-SHA256 of "v0:{timestamp}:{body}"."""
    # Bolt rejects timestamps more than five minutes from now, hence "now" by default.
    timestamp = int(time.time()) if timestamp is None else timestamp
    base_string = f"v0:{timestamp}:{body}".encode()
    digest = hmac.new(secret.encode(), base_string, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": f"v0={digest}"}


def command_payload(
    command: str = "/steward",
    text: str = "",
    *,
    user_id: str = "U123",
    user_name: str = "tester",
    channel_id: str = "C123",
    channel_name: str = "general",
    trigger_id: str = "1337.42.abc",
    response_url: str = UNSET_RESPONSE_URL,
    team_id: str = "T0001",
) -> dict[str, str]:
    """The fields Slack sends for a slash command (form fields over HTTP, the payload over Socket Mode)."""
    return {
        "token": "verification-token-unused",
        "team_id": team_id,
        "team_domain": "steward-test",
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": "A0001",
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id,
    }


def slash_command(
    command: str = "/steward",
    text: str = "",
    *,
    secret: str,
    timestamp: int | None = None,
    **fields: str,
) -> tuple[str, dict[str, str]]:
    """A signed slash-command request, form-encoded as Slack sends it (`fields` as for `command_payload`)."""
    body = urlencode(command_payload(command, text, **fields))
    return _signed(body, FORM_CONTENT_TYPE, secret, timestamp)


def interaction(
    payload: dict[str, Any], *, secret: str, timestamp: int | None = None
) -> tuple[str, dict[str, str]]:
    """A signed interaction (block action, view submission, shortcut...): form field `payload` holding JSON."""
    body = urlencode({"payload": json.dumps(payload)})
    return _signed(body, FORM_CONTENT_TYPE, secret, timestamp)


def event(
    payload: dict[str, Any], *, secret: str, timestamp: int | None = None
) -> tuple[str, dict[str, str]]:
    """A signed Events API request whose JSON body is `payload` as given (see `event_callback`)."""
    return _signed(json.dumps(payload), JSON_CONTENT_TYPE, secret, timestamp)


def event_callback(
    inner_event: dict[str, Any],
    *,
    team_id: str = "T0001",
    api_app_id: str = "A0001",
    event_id: str = "Ev0001",
    event_time: int = 1_700_000_000,
) -> dict[str, Any]:
    """Wrap an event (e.g. {"type": "app_home_opened", ...}) in Slack's event_callback envelope."""
    return {
        "token": "verification-token-unused",
        "team_id": team_id,
        "api_app_id": api_app_id,
        "event": inner_event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": event_time,
        "authorizations": [
            {"team_id": team_id, "user_id": "UBOT", "is_bot": True, "is_enterprise_install": False}
        ],
    }


def _signed(
    body: str, content_type: str, secret: str, timestamp: int | None
) -> tuple[str, dict[str, str]]:
    return body, {"Content-Type": content_type, **sign(body, secret=secret, timestamp=timestamp)}
