"""Ack overhead: Steward on `steward serve` against a bare Bolt app on the same server, side by side.

Both run as real gunicorn servers (`steward serve` and `python -m bench.bare_bolt`, the same options),
against the same fake Slack Web API, with Steward's database loaded with the benchmark's inventory.
For a slash command (`/steward search`), a button click (asset_show) and a modal submission (the
register form), a pool of client threads sends signed requests at concurrency 1, 16 and 64, each on a
new connection as Slack does (raw sockets, so the client takes little CPU from the servers); p50 and p99
of the time to the full HTTP answer are compared as ratios. The servers take turns, several per kind
and concurrency, so all see the same machine; Steward's work after its acks (the search's reply, the
card, the form's save) must finish before a bare app's turn, and how long it took after the load
("done +s") is reported too. The bot's resident memory (gunicorn master and workers) is read at idle
and after the load.

The bare app runs twice, as two servers, and each kind and concurrency is also measured as one against
the other (the "A/A" ratio): the same code, so whatever that ratio is away from 1.00 is what this
machine's noise alone makes of a ratio in this run. The floor under Steward's figures is both twins'
requests pooled. In the turns the three servers take in rotation, each goes first, second and third.

The floor is the fastest a Bolt app acks: its listener acks on the request thread
(`process_before_response`), so it pays neither a thread hand-off nor Bolt's 10 ms polling for the ack.
"""

from __future__ import annotations

import gc
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench.common import Run, database_url, figure, fresh_database, percentile
from bench.inventory_data import COMMON, OWNERS, seed_assets
from bot.app import EVENTS_PATH, HEALTH_PATH
from steward.sandbox import signing
from steward.sandbox.driver import submission
from steward.sandbox.slack_api import DEFAULT_TOKEN, FakeSlack

NAME = "ack"
SECRET = "bench-signing-secret"
TOKEN = DEFAULT_TOKEN
CHANNEL = "C0BENCH01"
USER = OWNERS[0]
ROOT = Path(__file__).resolve().parents[1]
STARTUP_SECONDS = 60
SETTLE_SECONDS = 120


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Served:
    """A server process on a free port; its base URL, and its resident memory with its children's."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("w")
        self.process = subprocess.Popen([*command, "--host", "127.0.0.1", "--port", str(self.port)], env=env,
                                        cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            try:
                if requests.get(self.base_url + HEALTH_PATH, timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{' '.join(command)} did not answer /healthz; see {log}")

    def rss_mib(self) -> float:
        """Resident memory of the server and its worker processes, in MiB."""
        return sum(_rss_kib(pid) for pid in _tree(self.process.pid)) / 1024

    def stop(self) -> None:
        """SIGTERM, and wait for the graceful shutdown."""
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def _tree(pid: int) -> list[int]:
    pids, children = [pid], Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        for child in children.read_text().split():
            pids += _tree(int(child))
    return pids


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def _requests(kind: str, count: int, fake: FakeSlack, form: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    """`count` signed requests of one kind, built before the clock starts (signing is Slack's work)."""
    response_url = fake.response_url("bench")
    if kind == "slash command":
        return [signing.slash_command(text=f"search {COMMON[n % len(COMMON)]}", secret=SECRET, user_id=USER,
                                      channel_id=CHANNEL, response_url=response_url) for n in range(count)]
    if kind == "button click":
        return [signing.interaction({
            "type": "block_actions", "user": {"id": USER}, "team": {"id": "T0001"}, "api_app_id": "A0001",
            "trigger_id": "1.2.3", "response_url": response_url, "channel": {"id": CHANNEL},
            "container": {"type": "message", "message_ts": "1.1", "channel_id": CHANNEL},
            "actions": [{"action_id": "asset_show", "block_id": "b1", "type": "button", "value": str(1 + n),
                         "action_ts": "1700000000.1"}]}, secret=SECRET) for n in range(count)]
    stamp = time.time_ns()
    return [signing.interaction(submission(form, {
        "name": f"Bench submitted model {stamp} {n}", "description": "Registered by the benchmark",
        "team": "Bench", "location_uri": "s3://bench/models", "details.task": "classification"}, user=USER),
        secret=SECRET) for n in range(count)]


def _raw(port: int, request: tuple[str, dict[str, str]]) -> bytes:
    """One signed request as the bytes Slack would send: a POST on a new connection, closed after the answer."""
    body, headers = request
    payload = body.encode()
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (f"POST {EVENTS_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{head}Content-Length: {len(payload)}\r\n"
            "Connection: close\r\n\r\n").encode() + payload


def _post(port: int, raw: bytes) -> bool:
    """Send one request and read its whole answer; whether it was a 200."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(raw)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), None)
        while length is None or len(body) < length:  # without a length, the answer ends when the server closes
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        return head.startswith(b"HTTP/1.1 200 ") and (length is None or len(body) >= length)


def _load(port: int, requests_: list[tuple[str, dict[str, str]]], concurrency: int) -> tuple[list[float], int]:
    """Send every request with `concurrency` client threads; (seconds each took, answers that were not 200).

    The client is raw sockets with each request's bytes built beforehand: on two cores shared with both
    servers and PostgreSQL, every millisecond of client CPU (the `requests` library spent about one per
    request) is taken from the servers it measures.

    The client's cyclic collector is off while it times: this process also holds the sandbox Slack and
    everything it recorded, and a full collection of that (150 ms) landed in whichever turn came after
    Steward's answers had grown it, always Steward's (its p99 at 64 went from ~75 to ~230 ms in the turn
    it hit)."""
    raws = [_raw(port, request) for request in requests_]

    def send(raw: bytes) -> tuple[float, bool]:
        started = time.perf_counter()
        try:
            ok = _post(port, raw)
        except OSError:
            ok = False
        return time.perf_counter() - started, ok

    gc.collect()
    gc.disable()
    try:
        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(send, raws))
    finally:
        gc.enable()
    return [took for took, _ in results], sum(not ok for _, ok in results)


def _answered(fake: FakeSlack) -> int:
    """Requests whose work after the ack is done: each search and card click replies on its response URL,
    and each saved form updates its modal."""
    return len(fake.calls_to("response_url")) + len(fake.calls_to("views.update"))


def _settle(fake: FakeSlack, answers: int) -> float:
    """Seconds until the fake Slack has seen `answers` replies (a timeout is reported, not hidden)."""
    started = time.perf_counter()
    while _answered(fake) < answers:
        if time.perf_counter() - started > SETTLE_SECONDS:
            print(f"  warning: {answers - _answered(fake)} requests had no answer {SETTLE_SECONDS} s after the load")
            break
        time.sleep(0.02)
    return time.perf_counter() - started


def _open_form(server: Served, fake: FakeSlack) -> dict[str, Any]:
    body, headers = signing.slash_command(text="register model", secret=SECRET, user_id=USER, channel_id=CHANNEL,
                                          response_url=fake.response_url("bench"))
    requests.post(server.base_url + EVENTS_PATH, data=body.encode(), headers=headers, timeout=30)
    return registration_form(fake, seconds=30)


def registration_form(fake: FakeSlack, *, seconds: float) -> dict[str, Any]:
    """The registration form `/steward register model` opened (on an AtOnce thread), within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        forms = [v for v in fake.views_opened() if v.get("callback_id") == "asset_register"]
        if forms:
            return forms[-1]
        time.sleep(0.05)
    raise RuntimeError("`/steward register model` opened no registration form")


def run(run: Run) -> dict[str, Any]:
    """Seed, serve both, load both, print; return the figures."""
    assets = run.pick(1_000, 20_000, 100_000)
    levels = run.pick((1, 16), (1, 16, 64), (1, 16, 64))
    per_level = run.pick(16, 128, 128)
    # Turns of each server per kind and concurrency. Short turns put each server's next to the others' under
    # the same load on the machine, which moves from second to second. One turn's p50 at 64 concurrent moves
    # by ±30% from turn to turn, for the bare app as for Steward, so the more turns a cell pools, the less
    # its ratio is the luck of a few: 12 × 128 rather than 6 × 256 (or 3 × 512 before that).
    rounds = run.pick(1, 3, 12)
    backend = run.backends[-1]  # PostgreSQL when given: what production runs
    figures: dict[str, Any] = {"assets": assets, "backend": backend, "rows": []}
    with (fresh_database(backend, run, prefix="ack") as engine, tempfile.TemporaryDirectory(prefix="ack-") as home,
          FakeSlack() as fake):
        seed_assets(engine, assets)
        fake.add_user(USER, name="bench")
        env = {**os.environ, "DATABASE_URL": database_url(engine), "SLACK_API_URL": fake.url,
               "SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SECRET, "SLACK_APP_TOKEN": "",
               "STEWARD_HOME": home, "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
        env.pop("BROKER_URL", None)  # the embedded file broker: state changes enqueue, no worker runs
        steward = Served([sys.executable, "-m", "steward", "serve", "--workers", "2"], env, Path(home, "bot.log"))
        twins = [Served([sys.executable, "-m", "bench.bare_bolt", "--workers", "2"], env, Path(home, f"bare-{n}.log"))
                 for n in (1, 2)]
        try:
            idle = steward.rss_mib()
            form = _open_form(steward, fake)
            print(f"ack overhead on {backend}, {assets:,} assets; steward serve vs bare Bolt (twice: A/A), 2 workers"
                  f" × 8 threads; {rounds} × {per_level} requests per server, kind and concurrency, turns rotating")
            print(f"  {'request':<15} {'conc':>4} {'steward p50':>11} {'p99':>8} {'bare p50':>9} {'p99':>8}"
                  f" {'x p50':>6} {'x p99':>6} {'A/A p50':>7} {'p99':>5} {'errors':>6} {'done +s':>7}")
            for kind in ("slash command", "button click", "modal submission"):
                for level in levels:
                    count = max(per_level, level * 2)
                    cell = _measure(steward, twins, fake, form, kind=kind, level=level, count=count, rounds=rounds)
                    ours, (first, second) = cell.steward, cell.twins
                    p50, p99 = percentile(ours, 50), percentile(ours, 99)
                    f50, f99 = percentile(first + second, 50), percentile(first + second, 99)
                    aa50 = percentile(first, 50) / percentile(second, 50)
                    aa99 = percentile(first, 99) / percentile(second, 99)
                    print(f"  {kind:<15} {level:>4} {p50 * 1000:11.1f} {p99 * 1000:8.1f} {f50 * 1000:9.1f}"
                          f" {f99 * 1000:8.1f} {p50 / f50:6.2f} {p99 / f99:6.2f} {aa50:7.2f} {aa99:5.2f}"
                          f" {cell.errors + cell.bare_errors:>6} {cell.settled:7.1f}")
                    figures[f"{kind} c{level}"] = {"p50_ms": round(p50 * 1000, 2), "p99_ms": round(p99 * 1000, 2),
                                                   "bare_p50_ms": round(f50 * 1000, 2),
                                                   "bare_p99_ms": round(f99 * 1000, 2),
                                                   "a_a_p50": round(aa50, 2), "a_a_p99": round(aa99, 2),
                                                   "errors": cell.errors, "bare_errors": cell.bare_errors,
                                                   "done_after_s": round(cell.settled, 2), "requests": len(ours)}
                    if level == levels[-1]:
                        figures["rows"] += [figure(f"{kind} p50 @{level}", p50, f50, "≤ 1.25× bare"),
                                            figure(f"{kind} p99 @{level}", p99, f99, "≤ 1.5× bare, < 300 ms")]
            loaded = steward.rss_mib()
            figures["bot_rss_mib"] = {"idle": round(idle, 1), "after_load": round(loaded, 1)}
            figures["rows"].append({"figure": "bot RSS idle → after load", "value": f"{idle:.0f} → {loaded:.0f} MiB"})
            print(f"  bot resident memory (master + 2 workers): {idle:.0f} MiB idle, {loaded:.0f} MiB after the load")
        finally:
            for server in (steward, *twins):
                server.stop()
    return figures


@dataclass
class Cell:
    """One kind at one concurrency: each server's request times over all its turns, and what went wrong."""

    steward: list[float] = field(default_factory=list)
    twins: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))
    errors: int = 0
    bare_errors: int = 0
    settled: float = 0.0


def _measure(steward: Served, twins: list[Served], fake: FakeSlack, form: dict[str, Any], *, kind: str, level: int,
             count: int, rounds: int) -> Cell:
    """`rounds` turns of `count` requests for each server, in an order that rotates every round, so a change
    in the machine's load between turns hits all three and none always follows the same one."""
    cell, order = Cell(), [steward, *twins]
    for turn in range(rounds):
        for server in order[turn % 3:] + order[:turn % 3]:
            answered = _answered(fake)
            took, failed = _load(server.port, _requests(kind, count, fake, form), level)
            if server is steward:
                cell.steward += took
                cell.errors += failed
                # Steward's work after its acks finishes before a bare app's turn, so it never slows the
                # floor; how long it took after the last ack is a figure of its own.
                cell.settled = max(cell.settled, _settle(fake, answered + count))
            else:
                cell.twins[twins.index(server)].extend(took)
                cell.bare_errors += failed
    return cell
