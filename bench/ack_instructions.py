"""Instructions per ack: Steward's WSGI app against the bare Bolt app's, counted by callgrind, in process.

The ack benchmark's wall-clock ratios move by about ±15% between runs of the same code on a shared 2-core
machine (its A/A ratio says so). Instruction counts do not: valgrind's callgrind counts the same total for
the same code, inputs and environment, whatever else the machine is doing. So this runs both apps in one
process under callgrind and hands each the same signed requests straight through WSGI (no server, no
sockets), counting each batch's instructions: callgrind_control zeroes the counters before a batch and
dumps them after it. Steward's work after its acks is held back (its quiet lane admits nothing), so the
count is the ack's own, with the request guard, the telemetry and the multiprocess metrics of
`steward serve`.

What it cannot see is what costs time without costing instructions: cache misses, the GIL, the server. It
tells exactly whether a change made the ack's own work bigger or smaller.

    .venv/bin/python -m bench.ack_instructions [--requests 300]     # needs valgrind; about 5 minutes
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import RESULTS, write_result

KINDS = ("slash command", "button click", "modal submission")
APPS = ("steward", "bare")
WARM_UP = 50


def main(argv: list[str] | None = None) -> int:
    """Count, print and write the figures; 1 with a one-line reason when valgrind is missing."""
    parser = argparse.ArgumentParser(prog="python -m bench.ack_instructions", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per app and kind (default 300)")
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"where JSON goes (default {RESULTS})")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # the run under callgrind writes here
    args = parser.parse_args(argv)
    if args.child:
        _count(args.requests, args.child)
        return 0
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        print("ack_instructions: valgrind (with callgrind_control) is not installed", file=sys.stderr)
        return 1
    figures = _measure(args.requests)
    print(f"wrote {write_result('ack_instructions', figures, args.results)}")
    return 0


def _measure(requests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ack-instructions-") as folder:
        manifest, metrics = Path(folder, "batches.json"), Path(folder, "metrics")
        metrics.mkdir()
        # Multiprocess metrics as `steward serve` observes them; one hash seed, so every run counts alike.
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics), "PYTHONHASHSEED": "0"}
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={folder}/callgrind.out",
                   sys.executable, "-m", "bench.ack_instructions", "--requests", str(requests), "--child", str(manifest)]
        started = time.perf_counter()
        subprocess.run(command, env=env, cwd=Path(__file__).resolve().parents[1], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        batches = json.loads(manifest.read_text())
        dumps = sorted(Path(folder).glob("callgrind.out.*"), key=lambda path: int(path.suffix[1:]))
        counts = [_total(dump) for dump in dumps]
    figures: dict[str, Any] = {"requests": requests, "seconds": round(time.perf_counter() - started, 1)}
    print(f"instructions per ack, in process under callgrind ({requests} requests per app and kind)")
    print(f"  {'request':<17} {'steward':>10} {'bare':>10} {'ratio':>6}")
    per_request = {tuple(batch): count / requests for batch, count in zip(batches, counts, strict=True)}
    for kind in KINDS:
        ours, bare = per_request[(kind, "steward")], per_request[(kind, "bare")]
        print(f"  {kind:<17} {ours:10,.0f} {bare:10,.0f} {ours / bare:6.2f}")
        figures[kind] = {"steward": round(ours), "bare": round(bare), "ratio": round(ours / bare, 3)}
    return figures


def _total(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise ValueError(f"{dump} holds no total")


def _count(requests: int, manifest: Path) -> None:
    """Under callgrind: build both apps, then one zeroed-and-dumped batch per kind and app."""
    from bench import ack_overhead as ack
    from bench.bare_bolt import bare_app, bare_wsgi_app
    from bench.inventory_data import OWNERS, seed_assets
    from bot import telemetry
    from steward import runtime, server
    from steward.sandbox.slack_api import FakeSlack
    from workflows.db import make_engine
    from workflows.schema import upgrade_database
    from workflows.settings import Settings

    class HeldLane(telemetry.QuietLane):
        """Takes work and never starts it: only the acks are counted."""

        def _admit(self) -> None:
            return None

    runtime.QuietLane = HeldLane
    with tempfile.TemporaryDirectory(prefix="ack-instructions-") as home, FakeSlack() as fake:
        os.environ.update({"DATABASE_URL": f"sqlite:///{home}/steward.db", "SLACK_API_URL": fake.url,
                           "SLACK_BOT_TOKEN": ack.TOKEN, "SLACK_SIGNING_SECRET": ack.SECRET,
                           "SLACK_APP_TOKEN": "", "STEWARD_HOME": home, "LOG_LEVEL": "WARNING"})
        os.environ.pop("BROKER_URL", None)
        settings = Settings()
        engine = make_engine(settings.database_url)
        upgrade_database(engine)
        seed_assets(engine, 200)
        fake.add_user(OWNERS[0], name="bench")
        apps = {"steward": server.bot_wsgi_app(runtime.build_bot(settings, engine), settings, engine),
                "bare": bare_wsgi_app(bare_app(settings))}
        form = _open_form(apps["steward"], fake)
        batches = []
        for kind in KINDS:
            for name in APPS:
                _serve(apps[name], [_environ(r) for r in ack._requests(kind, WARM_UP, fake, form)])
                environs = [_environ(r) for r in ack._requests(kind, requests, fake, form)]
                _callgrind("-z")
                _serve(apps[name], environs)
                _callgrind("-d")
                batches.append([kind, name])
        manifest.write_text(json.dumps(batches))
    os._exit(0)  # the held lanes' work is never to run; skip waiting for their threads


def _callgrind(option: str) -> None:
    subprocess.run(["callgrind_control", option, str(os.getpid())], check=True, stdout=subprocess.DEVNULL)


def _open_form(app: Any, fake: Any) -> dict[str, Any]:
    """The registration form Steward opens, for the modal submissions (it opens on an AtOnce thread)."""
    from bench import ack_overhead as ack
    from steward.sandbox import signing

    _serve(app, [_environ(signing.slash_command(text="register model", secret=ack.SECRET, user_id=ack.USER,
                                                channel_id=ack.CHANNEL, response_url=fake.response_url("bench")))])
    return ack.registration_form(fake, seconds=120)  # slow under callgrind


def _environ(request: tuple[str, dict[str, str]]) -> dict[str, Any]:
    """The WSGI environ gunicorn would build for one signed request."""
    body, headers = request
    payload = body.encode()
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/slack/events", "QUERY_STRING": "", "RAW_URI": "/slack/events",
               "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "3000", "SCRIPT_NAME": "",
               "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "40000", "SERVER_SOFTWARE": "gunicorn",
               "HTTP_HOST": "127.0.0.1:3000", "HTTP_CONNECTION": "close", "CONTENT_LENGTH": str(len(payload)),
               "CONTENT_TYPE": headers.get("Content-Type", "application/x-www-form-urlencoded"),
               "wsgi.input": io.BytesIO(payload), "wsgi.errors": sys.stderr, "wsgi.version": (1, 0),
               "wsgi.url_scheme": "http", "wsgi.multithread": True, "wsgi.multiprocess": True,
               "wsgi.run_once": False, "wsgi.input_terminated": True}
    environ |= {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()
                if name.lower() != "content-type"}
    return environ


def _serve(app: Any, environs: list[dict[str, Any]]) -> None:
    def start_response(status: str, headers: list, exc_info: Any = None) -> None:
        if not status.startswith("200"):
            raise RuntimeError(f"the app answered {status}")

    for environ in environs:
        b"".join(app(environ, start_response))


if __name__ == "__main__":
    sys.exit(main())
