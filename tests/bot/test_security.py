"""A correctly signed request is answered. Every way a signature can be wrong (missing, wrong secret, stale,
from the future, another version, a body altered after signing, a replay after the window), for commands,
clicks and events, is in tests/security/test_signatures.py."""


def test_a_correctly_signed_command_is_answered(harness):
    response = harness.command("help")
    assert response.status == 200
    assert "Steward keeps your AI assets under control" in harness.last_reply_text()
