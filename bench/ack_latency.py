"""How fast each listener acks over real HTTP: the time Slack waits before it sees our answer.

The real Bolt app (acking, then handing its work on, as `steward serve` runs it) is served by waitress on
loopback; a fake Slack Web API answers its calls; a database is seeded with a few thousand assets and
their lineage. Signed requests go over real HTTP with `requests`, one at a time, and the client-side
response time of each is recorded. Prints figures; never passes or fails.

    .venv/bin/python bench/ack_latency.py [--assets 2000] [--repeat 50] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from slack_sdk import WebClient  # noqa: E402
from sqlalchemy import Engine  # noqa: E402
from waitress import wasyncore  # noqa: E402
from waitress.server import create_server  # noqa: E402

from bot.app import EVENTS_PATH, HEALTH_PATH, create_app, wsgi_app  # noqa: E402
from bot.context import BotContext  # noqa: E402
from bot.telemetry import AtOnce, QuietLane  # noqa: E402
from steward.sandbox import signing  # noqa: E402
from tests.bot.conftest import block_action, submission  # noqa: E402
from tests.factories import ADMIN, OTHER, OWNER, asset_fields  # noqa: E402
from steward.sandbox.slack_api import FakeSlack  # noqa: E402
from workers.directory import Directory  # noqa: E402
from workflows.db import make_engine, transaction  # noqa: E402
from workflows.inventory import Actor, parse_asset_input, record_classification, register_asset  # noqa: E402
from workflows.lineage import edges_of  # noqa: E402
from workflows.policy import Policy, load_policy  # noqa: E402
from workflows.risk import RiskAnswers, classify  # noqa: E402
from workflows.schema import upgrade_database  # noqa: E402
from workflows.settings import Settings  # noqa: E402

SECRET = "bench-signing-secret"
TOKEN = "xoxb-test"
CHANNEL = "C0BENCH01"
SLACK_ACK_BUDGET_MS = 3000.0
REQUEST_TIMEOUT_S = 10.0
SETTLE_TIMEOUT_S = 10.0
OWNERS = (OWNER, OTHER, ADMIN)
WORDS = ("churn", "fraud", "credit", "vision", "pricing", "support", "forecast", "ranking", "speech",
         "health")
SEARCH_WORD = "churn"
SEED_BATCH = 200


# ---- seeding -----------------------------------------------------------------------------------


@dataclass
class Seeded:
    """What the requests refer to: a well-connected model's slug and id, and the count by kind."""

    model_slug: str
    model_id: int
    counts: dict[str, int] = field(default_factory=dict)


def seed(engine: Engine, *, total: int, policy: Policy, now: datetime, tag: str) -> Seeded:
    """Register `total` assets through the service, in realistic proportions and with lineage."""
    shares = (("infrastructure", 0.05), ("dataset", 0.35), ("model", 0.25), ("algorithm", 0.10),
              ("system", 0.15), ("documentation", 0.10))
    plan = [(kind, max(1, round(total * share))) for kind, share in shares]
    plan[1] = ("dataset", max(1, plan[1][1] + total - sum(n for _, n in plan)))  # exact total
    ids: dict[str, list[int]] = {kind: [] for kind, _ in plan}
    seeded = Seeded(model_slug="", model_id=0)
    i = 0
    for kind, count in plan:
        made = 0
        while made < count:
            with transaction(engine) as session:
                for _ in range(min(SEED_BATCH, count - made)):
                    word = WORDS[i % len(WORDS)]
                    fields = asset_fields(kind, name=f"{word.capitalize()} {kind} {i} {tag}",
                                          owner_id=OWNERS[i % len(OWNERS)], team=f"{word} team",
                                          description=f"The {word} {kind} number {i}, seeded for the bench.",
                                          lineage=_lineage(kind, i, ids))
                    asset = register_asset(session=session, data=parse_asset_input(fields),
                                           actor=Actor(fields["owner_id"]), now=now, policy=policy)
                    ids[kind].append(asset.id)
                    if kind == "model" and not seeded.model_slug and fields["lineage"].get("trained_on"):
                        seeded.model_slug, seeded.model_id = asset.slug, asset.id
                    made += 1
                    i += 1
    # Classify one system in five so tiers flow down the lineage, as they would in use.
    tiers = ("minimal", "limited", "high")
    answers = {"minimal": {}, "limited": {"transparency_duties": ["interacts_with_people"]},
               "high": {"annex_iii_areas": ["employment"]}}
    for n, system_id in enumerate(ids["system"][::5]):
        tier = tiers[n % len(tiers)]
        outcome = classify(RiskAnswers.model_validate(answers[tier]))
        with transaction(engine) as session:
            record_classification(session=session, asset_id=system_id, tier=outcome.tier,
                                  answers=answers[tier], flags=outcome.transparency_flags,
                                  rationale=outcome.rationale, actor=Actor(OWNER), now=now, policy=policy)
    seeded.counts = {kind: len(v) for kind, v in ids.items()}
    return seeded


def _lineage(kind: str, i: int, ids: dict[str, list[int]]) -> dict[str, list[int]]:
    """Edges to assets registered earlier (so never a cycle), a few per asset."""
    def some(pool: list[int], k: int) -> list[int]:
        return sorted({pool[(i * 7 + j * 13) % len(pool)] for j in range(k)}) if pool else []

    infra = some(ids["infrastructure"], 1)
    if kind == "dataset":
        return {"derived_from": some(ids["dataset"], 1) if i % 4 == 0 else [], "runs_on": infra}
    if kind == "model":
        return {"trained_on": some(ids["dataset"], 3), "tested_on": some(ids["dataset"], 1),
                "derived_from": some(ids["model"], 1) if i % 5 == 0 else [], "runs_on": infra}
    if kind == "algorithm":
        return {"uses": some(ids["dataset"], 1) + some(ids["model"], 1), "runs_on": infra}
    if kind == "system":
        return {"uses": some(ids["model"], 2) + some(ids["algorithm"], 1),
                "tested_on": some(ids["dataset"], 1), "runs_on": infra}
    if kind == "documentation":
        return {"documents": some(ids["model"] or ids["system"], 1)}
    return {}


# ---- the server --------------------------------------------------------------------------------


class Server:
    """The Bolt app behind waitress on an ephemeral loopback port, in a background thread."""

    def __init__(self, app: Any):
        self._server = create_server(wsgi_app(app), host="127.0.0.1", port=0, threads=8,
                                     ident="steward-bench")
        self.base_url = f"http://127.0.0.1:{self._server.effective_port}"
        self._thread = threading.Thread(target=self._server.run, daemon=True, name="waitress")

    def start(self) -> Server:
        """Serve, and wait (bounded) until /healthz answers."""
        self._thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if requests.get(self.base_url + HEALTH_PATH, timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("the bot did not come up within 10 s")

    def stop(self) -> None:
        """Stop accepting, finish the worker threads and close every socket."""
        self._server.task_dispatcher.shutdown()
        self._server.close()
        wasyncore.close_all(self._server._map)
        self._thread.join(timeout=5)


# ---- requests ----------------------------------------------------------------------------------


@dataclass
class Kind:
    """One kind of request: how to build it, and what a correct answer looks like."""

    name: str
    build: Callable[[int], tuple[str, dict[str, str]]]
    check: Callable[[requests.Response], bool] = lambda r: r.status_code == 200


@dataclass
class Figures:
    """Response times of one kind, in milliseconds, and how many answers were wrong."""

    times: list[float] = field(default_factory=list)
    wrong: int = 0

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile."""
        ordered = sorted(self.times)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def kinds(fake: FakeSlack, seeded: Seeded, opened_form: Callable[[], dict[str, Any]], *, tag: str,
          trained_on: list[int]) -> list[Kind]:
    """The requests measured, in order."""
    def command(text: str) -> Callable[[int], tuple[str, dict[str, str]]]:
        return lambda n: signing.slash_command(text=text, secret=SECRET, user_id=OWNER, channel_id=CHANNEL,
                                               response_url=fake.response_url("bench"))

    def interaction(payload: Callable[[int], dict[str, Any]]) -> Callable[[int], tuple[str, dict[str, str]]]:
        return lambda n: signing.interaction(payload(n), secret=SECRET)

    def suggestion(n: int) -> dict[str, Any]:
        view = opened_form()
        return {"type": "block_suggestion", "user": {"id": OWNER}, "team": {"id": "T0001"},
                "api_app_id": "A0001", "action_id": "pick:trained_on", "block_id": "edge:trained_on",
                "value": SEARCH_WORD, "view": {**view, "id": view.get("id", "V1")}}

    def register(n: int) -> dict[str, Any]:
        return submission(opened_form(), {
            "name": f"Bench submitted model {n} {tag}", "description": "Registered by the benchmark",
            "team": "Bench", "location_uri": "s3://bench/models", "details.task": "classification",
            "edge:trained_on": [str(i) for i in trained_on],
        })

    def saving(response: requests.Response) -> bool:
        return response.status_code == 200 and response.json().get("response_action") == "update"

    def has_options(response: requests.Response) -> bool:
        return response.status_code == 200 and bool(response.json().get("options"))

    return [
        Kind("/steward help", command("help")),
        Kind("/steward asset <slug>", command(f"asset {seeded.model_slug}")),
        Kind(f"/steward search {SEARCH_WORD}", command(f"search {SEARCH_WORD}")),
        Kind("/steward mine", command("mine")),
        Kind("/steward register model", command("register model")),
        Kind("click asset_show", interaction(lambda n: block_action(
            "asset_show", str(seeded.model_id), response_url=fake.response_url("bench")))),
        Kind("lineage picker options", interaction(suggestion), has_options),
        Kind("register submission", interaction(register), saving),
    ]


def settle(fake: FakeSlack, *, quiet: float = 0.2, timeout: float = SETTLE_TIMEOUT_S) -> None:
    """Wait (bounded) until the listeners' after-ack work has stopped calling the fake Slack."""
    deadline = time.monotonic() + timeout
    seen, since = len(fake.calls), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.02)
        count = len(fake.calls)
        if count != seen:
            seen, since = count, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


def measure(base_url: str, kind: Kind, *, repeat: int, warmup: int, deadline: float) -> Figures:
    """Send `repeat` requests of one kind, one at a time; time each from send to full response."""
    figures = Figures()
    url = base_url + EVENTS_PATH
    for n in range(warmup + repeat):
        if time.monotonic() > deadline and figures.times:
            break
        body, headers = kind.build(n)  # signing is Slack's work, not ours: build before the clock starts
        started = time.perf_counter()
        try:
            response = requests.post(url, data=body.encode(), headers=headers, timeout=REQUEST_TIMEOUT_S)
        except requests.RequestException:
            elapsed, ok = REQUEST_TIMEOUT_S * 1000, False
        else:
            elapsed = (time.perf_counter() - started) * 1000
            try:
                ok = kind.check(response)
            except ValueError:  # not the JSON the check expected
                ok = False
        if n < warmup:
            continue
        figures.times.append(elapsed)
        figures.wrong += not ok
    return figures


# ---- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Seed, serve, send, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets", type=int, default=2000, help="assets to seed (default 2000)")
    parser.add_argument("--repeat", type=int, default=50, help="requests of each kind (default 50)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="unmeasured requests of each kind first (default 2)")
    parser.add_argument("--database-url", default="",
                        help="a PostgreSQL (or SQLite) URL to use instead of a temporary SQLite file; "
                             "use a throwaway database: assets are added to it")
    parser.add_argument("--budget", type=float, default=90.0,
                        help="seconds for the measuring phase; repeats stop early past it (default 90)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("steward").setLevel(logging.ERROR)

    tag = uuid.uuid4().hex[:6]
    now = datetime.now(UTC)
    policy = load_policy(None)
    with tempfile.TemporaryDirectory(prefix="steward-bench-") as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp, 'bench.db').as_posix()}"
        engine = make_engine(url)
        fake = FakeSlack().start()
        server: Server | None = None
        try:
            for user_id, name in ((OWNER, "olive"), (OTHER, "oscar"), (ADMIN, "ada")):
                fake.add_user(user_id, name=name)

            started = time.monotonic()
            upgrade_database(engine)
            seeded = seed(engine, total=args.assets, policy=policy, now=now, tag=tag)
            seed_seconds = time.monotonic() - started
            with transaction(engine) as session:
                outgoing, incoming = edges_of(session=session, asset_id=seeded.model_id)
            trained_on = [target.id for edge, target in outgoing if edge.type == "trained_on"][:2]

            settings = Settings(slack_bot_token=TOKEN, slack_signing_secret=SECRET, slack_api_url=fake.url,
                                database_url=url)
            client = WebClient(token=TOKEN, base_url=fake.url)
            # Wired as `steward serve` wires it: the work after each ack runs on threads of its own.
            ctx = BotContext(settings=settings, engine=engine, policy=policy, directory=Directory(client),
                             enqueue_delivery=lambda ids: None, at_once=AtOnce().submit,
                             after_ack=QuietLane().submit)
            server = Server(create_app(ctx, client=client)).start()

            def opened_form() -> dict[str, Any]:
                forms = [v for v in fake.views_opened() if v.get("callback_id") == "asset_register"]
                if forms:
                    return forms[-1]
                body, headers = signing.slash_command(text="register model", secret=SECRET, user_id=OWNER,
                                                      channel_id=CHANNEL,
                                                      response_url=fake.response_url("bench"))
                requests.post(server.base_url + EVENTS_PATH, data=body.encode(), headers=headers,
                              timeout=REQUEST_TIMEOUT_S)
                settle(fake)
                forms = [v for v in fake.views_opened() if v.get("callback_id") == "asset_register"]
                if not forms:
                    raise RuntimeError("`/steward register model` opened no registration form")
                return forms[-1]

            backend = engine.dialect.name
            mix = ", ".join(f"{n} {k}" for k, n in seeded.counts.items())
            print(f"Steward ack latency: {backend} database, {args.assets} seeded assets "
                  f"({mix}; seeded in {seed_seconds:.1f} s)")
            print(f"asset card for `{seeded.model_slug}`: {len(outgoing)} edges out, {len(incoming)} in; "
                  f"{args.repeat} requests per kind after {args.warmup} warm-up, sequential, "
                  "new connection each")
            print()

            deadline = time.monotonic() + args.budget
            results: list[tuple[str, Figures]] = []
            for kind in kinds(fake, seeded, opened_form, tag=tag, trained_on=trained_on):
                figures = measure(server.base_url, kind, repeat=args.repeat, warmup=args.warmup,
                                  deadline=deadline)
                results.append((kind.name, figures))
                settle(fake)

            width = max(len(name) for name, _ in results)
            print(f"{'request':<{width}}  {'n':>4}  {'p50 ms':>8}  {'p95 ms':>8}  {'max ms':>8}")
            for name, figures in results:
                note = f"  ({figures.wrong} wrong answers)" if figures.wrong else ""
                print(f"{name:<{width}}  {len(figures.times):>4}  {figures.percentile(50):>8.1f}  "
                      f"{figures.percentile(95):>8.1f}  {max(figures.times):>8.1f}{note}")
            worst_name, worst = max(results, key=lambda item: item[1].percentile(95))
            p95 = worst.percentile(95)
            print()
            print(f"worst p95: {p95:.1f} ms ({worst_name}), {p95 / SLACK_ACK_BUDGET_MS:.1%} of Slack's "
                  f"{SLACK_ACK_BUDGET_MS:.0f} ms ack budget")
            failed = [c.method for c in fake.calls if c.failed]
            if failed:
                print(f"note: {len(failed)} fake Slack call(s) failed: {sorted(set(failed))}")
        finally:
            if server is not None:
                server.stop()
            fake.stop()
            engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
