"""The sandbox Slack: a local Slack Web API, Socket Mode server and request signing, for the demo and the tests.

One implementation serves both: `steward demo` puts it in place of Slack, and the test suite drives
the real stack against it, over HTTP (signed requests) or Socket Mode (envelopes).
"""

from steward.sandbox.slack_api import Call, FakeSlack
from steward.sandbox.socket_mode import SocketConnection, SocketModeServer

__all__ = ["Call", "FakeSlack", "SocketConnection", "SocketModeServer"]
