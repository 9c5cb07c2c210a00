"""Reading the body of a Slack request over HTTP, as Bolt would, but right and in C where it can be.

Bolt's own reader (`slack_bolt.request.internals.parse_body`) has two costs Steward does not pay:

- It percent-decodes with `urllib.parse`, a Python loop over every `%XX`. A modal submission is 10–15 KB
  of URL-encoded JSON with thousands of escapes: that loop was two thirds of the CPU of its ack, in
  Steward and in a bare Bolt app alike. `percent_decode` does the same decoding with the interpreter's
  C codecs, and falls back to `urllib.parse` for anything it is not sure of.
- It takes any form body containing the letters "payload" for an interaction, so `/steward search
  payload` (or a description mentioning a payload) reached the app as an empty body, which Slack shows as
  `dispatch_failed`. `read_body` looks for the `payload` field itself.

The raw body is kept as it came: Bolt checks the signature against it.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote_plus

from slack_bolt.context import BoltContext
from slack_bolt.request import BoltRequest
from slack_bolt.request.internals import build_context

_NUL_OR_SURROGATE_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")


def percent_decode(text: str) -> str:
    """`urllib.parse.unquote_plus(text)`: the same string, decoded by C codecs when `text` is plain ASCII."""
    if "%" not in text:
        return text.replace("+", " ")
    # Every `%XX` becomes the escape `\xXX`, which the unicode_escape codec turns into the byte's code
    # point; latin-1 gives back those bytes for UTF-8 to decode. A backslash already in the text would be
    # read as an escape of its own, and a `%` without two hex digits makes the codec raise: both go the
    # slow way, which leaves them as urllib does.
    if text.isascii() and "\\" not in text:
        try:
            escaped = text.replace("+", " ").replace("%", "\\x").encode("ascii")
            return escaped.decode("unicode_escape").encode("latin-1").decode("utf-8", "replace")
        except UnicodeDecodeError:
            pass
    return unquote_plus(text)


def read_form(text: str) -> dict[str, str]:
    """The fields of an `application/x-www-form-urlencoded` body, as `dict(parse_qsl(text, keep_blank_values=True))`."""
    fields = {}
    for pair in text.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            fields[percent_decode(name)] = percent_decode(value)
    return fields


def read_body(raw: str, content_type: str | None) -> tuple[dict[str, Any], bool]:
    """The payload of a request body, and whether any of its strings may hold a NUL or a lone surrogate.

    In JSON those can only come from a `\\u0000` or `\\uD800`–`\\uDFFF` escape (`json.loads` refuses a raw
    control character, and the text itself came from UTF-8), and in decoded form fields only from a
    `%00` (`percent_decode` replaces bad UTF-8). Most bodies have neither, and need not be walked.
    """
    if not raw:
        return {}, False
    if content_type == "application/json" or raw.startswith("{"):
        return json.loads(raw), _may_hold_nul_or_surrogate(raw)
    fields = read_form(raw)
    if "payload" in fields:
        payload = fields["payload"]
        return json.loads(payload), "\x00" in payload or _may_hold_nul_or_surrogate(payload)
    return fields, any("\x00" in name or "\x00" in value for name, value in fields.items())


def _may_hold_nul_or_surrogate(json_text: str) -> bool:
    # A pair of surrogates (an emoji) matches too: harmless, the walk then finds nothing to change.
    return "\\u" in json_text and _NUL_OR_SURROGATE_ESCAPE.search(json_text) is not None


def read_request(raw: str, *, query: str, headers: dict[str, Any]) -> tuple[BoltRequest, bool]:
    """A Bolt request holding `raw` (whose signature Bolt checks) and the payload read from it, and
    whether its strings may need cleaning (see `read_body`). Raises ValueError on a body it cannot read."""
    request = BoltRequest(body="", query=query, headers=headers)  # an empty body: Bolt parses nothing
    body, unclean = read_body(raw, request.content_type)
    request.raw_body, request.body = raw, body
    request.context = build_context(BoltContext({}), body)
    return request, unclean
