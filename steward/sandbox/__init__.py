"""The sandbox Slack: a local Slack Web API (and request signing) for the demo and the tests.

One implementation serves both: `steward demo` puts it in place of Slack, and the test suite drives
the real stack against it.
"""

from steward.sandbox.slack_api import Call, FakeSlack

__all__ = ["Call", "FakeSlack"]
