"""What `InstrumentedApp` does differently from Bolt on each request gives listeners what Bolt would give them:
the request's own client is a copy of the app's, as good as the one Bolt builds, and the latency histograms
count under each listener's label."""

from __future__ import annotations

from prometheus_client import REGISTRY
from slack_bolt import App, BoltRequest

from bot.telemetry import ACKS, InstrumentedApp, request_client
from workers.slack_client import make_slack_client
from workflows.settings import Settings


def _app(tmp_path) -> InstrumentedApp:
    settings = Settings(_env_file=None, steward_home=tmp_path, slack_bot_token=" xoxb-telemetry ",
                        slack_api_url="http://127.0.0.1:9/api/")
    return InstrumentedApp(signing_secret="s", client=make_slack_client(settings), token_verification_enabled=False)


def _request(team_id: str | None) -> BoltRequest:
    body = {"type": "block_actions", "user": {"id": "U1"}, "actions": []}
    if team_id:
        body["team"] = {"id": team_id}
    return BoltRequest(body=body, mode="socket_mode")


def test_a_request_s_client_is_the_one_bolt_would_build_for_it(tmp_path):
    app = _app(tmp_path)
    for team_id in ("T0TELEMETRY", None):
        ours, bolts = _request(team_id), _request(team_id)
        app._init_context(ours)
        App._init_context(app, bolts)  # Bolt's own, on the same app

        assert ours.context.keys() == bolts.context.keys()
        assert all(ours.context[key] is bolts.context[key] for key in ("logger", "token", "listener_runner"))
        mine, theirs = ours.context["client"], bolts.context["client"]
        assert type(mine) is type(theirs) and mine is not app.client
        assert vars(mine).keys() == vars(theirs).keys()
        for name in vars(theirs):
            assert getattr(mine, name) == getattr(theirs, name), name
        assert mine.default_params == ({"team_id": team_id} if team_id else {})


def test_a_request_s_client_can_change_without_changing_the_app_s(tmp_path):
    app = _app(tmp_path)
    request = _request("T0TELEMETRY")
    app._init_context(request)
    mine = request.context["client"]

    mine.token = "xoxb-another"
    mine.retry_handlers.clear()
    mine.default_params["team_id"] = "T0OTHER"

    assert app.client.token == "xoxb-telemetry"
    assert len(app.client.retry_handlers) == 4
    assert "team_id" not in app.client.default_params
    assert request_client(app.client, token=None, team_id=None).token is None


def test_latency_is_observed_under_each_listener_s_label():
    def count(listener: str) -> float:
        return REGISTRY.get_sample_value("steward_ack_seconds_count", {"listener": listener}) or 0.0

    before = count("action:telemetry_a"), count("action:telemetry_b")

    ACKS.observe("action:telemetry_a", 0.01)
    ACKS.observe("action:telemetry_a", 0.02)
    ACKS.observe("action:telemetry_b", 0.03)

    assert (count("action:telemetry_a"), count("action:telemetry_b")) == (before[0] + 2, before[1] + 1)
    assert REGISTRY.get_sample_value("steward_ack_seconds_sum", {"listener": "action:telemetry_b"}) >= 0.03
