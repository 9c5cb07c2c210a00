"""The README's first command, tried as a newcomer would: without Slack tokens, `steward dev` plays the demo
on the real stack (bot over HTTP, worker, scheduler, SQLite, file broker) against the sandbox Slack, and
exits 0. `steward demo --serve` then stays up for commands of one's own, sent with `steward sandbox send`.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]  # the story runs under STORY_SECONDS

STORY_SECONDS = 150  # generous: CI machines are shared; the demo itself reports how long it took
SCENES = ("1. Register", "2. Classify", "3. Dan asks", "4. Security denies", "5. Dan asks again",
          "6. Everyone approves", "7. Six days later", "8. Three months later", "9. Evidence")


def newcomer_env() -> dict[str, str]:
    """A shell with no Steward or Slack configuration at all (and a wide terminal, so lines don't wrap)."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SLACK_", "STEWARD_", "DATABASE_URL", "BROKER_URL", "PROMETHEUS_"))}
    return {**env, "COLUMNS": "250"}


def logs(home: Path) -> str:
    """The tail of each demo process's log, to explain a failure."""
    return "".join(f"\n--- {path.name}\n{path.read_text(errors='replace')[-1500:]}" for path in home.glob("*.log"))


def test_without_tokens_the_first_command_plays_the_demo_and_exits_0(tmp_path: Path):
    result = subprocess.run([sys.executable, "-m", "steward", "dev"], cwd=tmp_path, env=newcomer_env(),
                            capture_output=True, text=True, timeout=STORY_SECONDS, check=False)
    out = result.stdout
    assert result.returncode == 0, f"{out[-3000:]}\n{result.stderr[-3000:]}"
    assert "No SLACK_BOT_TOKEN is set" in out
    positions = [out.find(scene) for scene in SCENES]
    assert -1 not in positions and positions == sorted(positions), f"scenes missing or out of order:\n{out}"
    # What people saw, as the real stack sent it to the sandbox.
    for seen in ("the same DM to Maya (ML engineer), Priya (dataset owner), Sam (security lead)",
                 "Denied by @sam: Name the audit ticket", "approved by @maya", " Extend ",
                 "of your AI assets need", "Reviewed by @maya", "ok: ", "(CycloneDX 1.6)"):
        assert seen in out, f"{seen!r} is not in the transcript:\n{out}"
    assert "Traceback" not in out + result.stderr
    assert list(tmp_path.iterdir()) == [], "the demo keeps its files out of the directory it was run in"


def test_demo_serve_takes_signed_commands_of_ones_own(tmp_path: Path):
    home = tmp_path / "demo"
    demo = subprocess.Popen([sys.executable, "-m", "steward", "demo", "--serve", "--home", str(home)],
                            cwd=tmp_path, env=newcomer_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in demo.stdout], daemon=True).start()  # type: ignore[union-attr]
    seen: list[str] = []

    def read_until(marker: str, timeout: float) -> None:
        while not any(marker in line for line in seen):
            try:
                seen.append(lines.get(timeout=timeout))
            except queue.Empty:
                raise AssertionError(f"no {marker!r} from the demo:\n{''.join(seen)}") from None

    try:
        read_until("Ctrl-C stops everything", STORY_SECONDS)
        assert (home / "sandbox.json").stat().st_mode & 0o077 == 0, "the connection file holds a secret"
        sent = subprocess.run([sys.executable, "-m", "steward", "sandbox", "send", "--home", str(home), "--as", "dan",
                               "/steward access"], cwd=tmp_path, env=newcomer_env(), capture_output=True,
                              text=True, timeout=60, check=False)
        assert sent.returncode == 0, sent.stdout + sent.stderr + "".join(seen) + logs(home)
        assert "sent as dan" in sent.stdout
        # The bot's answer reaches the sandbox, and the demo's terminal shows what Dan sees.
        read_until("only Dan (data scientist) sees", 30)

        unknown = subprocess.run([sys.executable, "-m", "steward", "sandbox", "send", "--home", str(home), "--as",
                                  "eve", "/steward mine"], cwd=tmp_path, env=newcomer_env(), capture_output=True,
                                 text=True, timeout=60, check=False)
        assert unknown.returncode == 1 and unknown.stderr.strip().splitlines() == [
            "Error: nobody called 'eve' here: choose dan, maya, priya, sam"]
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            code = demo.wait(timeout=30)
        except subprocess.TimeoutExpired:
            demo.kill()
            raise
    assert code == 0, "".join(seen)[-3000:]
