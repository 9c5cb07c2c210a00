"""With Slack tokens in `.env`, the README's first command runs Steward for real: `steward dev` starts the
bot, a worker and the scheduler on embedded defaults (SQLite, the file broker) and connects to Slack in
Socket Mode. Here "Slack" is the sandbox: its Socket Mode server sends a command, and Steward answers."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from steward.sandbox.driver import wait_for
from steward.sandbox.slack_api import DEFAULT_APP_TOKEN, DEFAULT_TOKEN, FakeSlack
from tests.e2e.test_demo import newcomer_env

pytestmark = pytest.mark.e2e


def test_tokens_in_dotenv_run_steward_in_socket_mode_on_embedded_defaults(tmp_path: Path):
    with FakeSlack() as sandbox:
        (tmp_path / ".env").write_text("\n".join([
            f"SLACK_BOT_TOKEN={DEFAULT_TOKEN}", "SLACK_SIGNING_SECRET=from-the-basic-information-page",
            f"SLACK_APP_TOKEN={DEFAULT_APP_TOKEN}", f"SLACK_API_URL={sandbox.url}"]) + "\n", encoding="utf-8")
        dev = subprocess.Popen([sys.executable, "-m", "steward", "dev", "--port", "0"], cwd=tmp_path,
                               env=newcomer_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            socket = sandbox.start_socket_mode()
            socket.wait_for_connection(timeout=60)
            socket.slash_command("register dataset", user_id="U0OWNER01", timeout=30)
            modal = wait_for(lambda: sandbox.views_opened(), what="the registration modal")[0]
            assert modal["title"]["text"] == "Register an asset"
            socket.slash_command("mine", user_id="U0OWNER01", timeout=30)
            reply = wait_for(lambda: sandbox.calls_to("response_url"), what="the answer to /steward mine")[0]
            assert "You own no assets yet" in json.dumps(reply.args)
        finally:
            dev.send_signal(signal.SIGINT)
            out, _ = dev.communicate(timeout=30)
    assert dev.returncode == 0, out
    assert "connected to Slack in Socket Mode" in out
    assert (tmp_path / ".steward" / "steward.db").exists(), "embedded defaults: a SQLite file under ./.steward"
    assert "Traceback" not in out
