"""The HTML report in a real browser: headless Chromium (Debian's `chromium`) renders the page, and the
test reads the rendered DOM, a screenshot, a printed PDF and Chromium's network log.

The network log also records Chromium's own background traffic (update checks, account probes), which
no flag fully silences; those requests have no initiating origin. A request the page itself made is
initiated from the page (`file://`), so any such request fails the test. A deliberately leaky page
proves the check would catch one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.report_seed import CLEAN, FAILING, seed_report
from workflows.db import transaction
from workflows.report import gather
from workflows.report_render import render_html

CHROMIUM = os.environ.get("STEWARD_TEST_CHROMIUM", "/usr/bin/chromium")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-extensions", "--disable-sync")
NO_ORIGIN = "not an origin"  # how the net log marks the browser's own requests


@pytest.fixture(scope="module")
def chromium() -> str:
    """The Chromium binary, or a loud skip (a failure in CI, where .ci/run installs it)."""
    if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        found = shutil.which("chromium")
        if found is None:
            message = (f"*** {CHROMIUM} is missing; the HTML report is not checked in a browser "
                       "(apt-get install chromium) ***")
            if IN_CI:
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
        return found
    return CHROMIUM


def run_chromium(binary: str, tmp_path: Path, page: Path, *extra: str) -> tuple[str, list[str]]:
    """Open `page` headless with `extra` flags; returns (stdout, URLs the page itself requested)."""
    profile, netlog = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}", tmp_path / "net.json"
    netlog.unlink(missing_ok=True)
    done = subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", f"--log-net-log={netlog}", *extra,
                           page.as_uri()], check=False, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, page_requests(netlog)


def page_requests(netlog: Path) -> list[str]:
    """URLs of requests that a page initiated, from Chromium's net log."""
    log = json.loads(netlog.read_text(encoding="utf-8"))
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [event["params"]["url"] for event in log["events"]
            if event["type"] == start_job and "url" in event.get("params", {})
            and event["params"].get("initiator") != NO_ORIGIN]


class _Text(HTMLParser):
    """The visible text of a document, and the tags and attributes in it."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[tuple[str, dict[str, str]]] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in ("style", "title", "script"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("style", "title", "script"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)


def parse(dom: str) -> _Text:
    """The parsed DOM; its text is whitespace-collapsed."""
    parser = _Text()
    parser.feed(dom)
    return parser


def write_report(engine, policy, now, offset: timedelta, tmp_path: Path) -> Path:
    """Seed the known database and write its report as of t0 + offset."""
    seed_report(engine, policy=policy, t0=now)
    with transaction(engine) as session:
        report = gather(session, now + offset, policy)
    page = tmp_path / "report.html"
    page.write_text(render_html(report), encoding="utf-8")
    return page


def test_report_renders_with_its_numbers_and_charts(chromium, sqlite_engine, policy, now, tmp_path):
    page = write_report(sqlite_engine, policy, now, CLEAN, tmp_path)
    dom, requested = run_chromium(chromium, tmp_path, page, "--dump-dom")
    parsed = parse(dom)
    text = " ".join(" ".join(parsed.text).split())
    assert "Steward governance report" in text
    assert "9 assets; 4 unclassified (1 AI system(s) without a risk classification)" in text
    assert "7 on time, 1 due within 14 days, 1 overdue." in text
    assert "loan-approval AI system / use case High U0OWNER1 Risk assessment, Impact assessment" in text
    assert "Median time to decision 3h 00m" in text and "95th percentile time to decision 5h 00m" in text
    assert "Requests expired undecided 1" in text
    assert "churn-events U0BREAK2" in text and "not reviewed" in text
    assert "Grants past expiry, not revoked: 0 (OK)" in text
    assert "FAILURE" not in text
    # Both charts are in the rendered DOM as SVG, one bar per tier, with the right values.
    svgs = {attrs.get("id") for tag, attrs in parsed.tags if tag == "svg"}
    assert {"chart-inventory", "chart-grants"} <= svgs
    bars = [attrs for tag, attrs in parsed.tags if tag == "rect" and attrs.get("class") == "bar"]
    assert len(bars) == 10
    assert [(b["data-label"], b["data-value"]) for b in bars[5:]] == [
        ("Prohibited", "0"), ("High", "1"), ("Limited", "0"), ("Minimal", "1"), ("Unclassified", "4")]
    # Nothing to fetch, and nothing fetched.
    assert not [attrs for _, attrs in parsed.tags if {"src", "href"} & set(attrs)]
    assert not re.search(r"https?://", page.read_text(encoding="utf-8"))
    assert not re.search(r"https?://", dom)
    assert requested == []


def test_grants_past_expiry_show_as_a_red_failure(chromium, sqlite_engine, policy, now, tmp_path):
    page = write_report(sqlite_engine, policy, now, FAILING, tmp_path)
    dom, requested = run_chromium(chromium, tmp_path, page, "--dump-dom")
    parsed = parse(dom)
    text = " ".join(" ".join(parsed.text).split())
    assert "FAILURE: 3 grants past expiry but not revoked (must be 0)" in text
    banner = [attrs for tag, attrs in parsed.tags if attrs.get("id") == "failure-banner"]
    assert banner and banner[0]["class"] == "failure"
    assert ".failure { border: 2px solid var(--bad)" in dom and "--bad:#b3261e" in dom  # red
    assert requested == []


def test_screenshot_and_print(chromium, sqlite_engine, policy, now, tmp_path):
    page = write_report(sqlite_engine, policy, now, CLEAN, tmp_path)
    shot, pdf = tmp_path / "report.png", tmp_path / "report.pdf"
    run_chromium(chromium, tmp_path, page, f"--screenshot={shot}", "--window-size=1100,1400")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    run_chromium(chromium, tmp_path, page, f"--print-to-pdf={pdf}", "--no-pdf-header-footer")
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000
    assert "@media print" in page.read_text(encoding="utf-8")


def test_the_network_check_catches_a_leaky_page(chromium, tmp_path):
    leaky = tmp_path / "leaky.html"
    leaky.write_text('<!DOCTYPE html><img src="https://example.invalid/x.png">', encoding="utf-8")
    _, requested = run_chromium(chromium, tmp_path, leaky, "--dump-dom")
    assert requested == ["https://example.invalid/x.png"]
