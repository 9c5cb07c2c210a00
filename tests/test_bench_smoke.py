"""`python -m bench --size tiny` runs every benchmark end to end: a smoke test, never a timing test.

It asserts only that each benchmark printed its figures and wrote its JSON, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import ack_instructions
from bench.__main__ import BENCHMARKS, parse_args
from tests.conftest import service_missing

ROOT = Path(__file__).resolve().parents[1]
# The ack benchmark serves one database, PostgreSQL when it is given (what production runs).
ON_BOTH = {"search", "sweep", "evidence"}
ON_POSTGRES = {"ack", "decisions"}
BENCH_REDIS_DB = 11


@pytest.mark.timeout(660)  # five benchmarks' setup (databases, worker processes) outlasts the default
def test_every_benchmark_runs_at_tiny_size_on_both_databases(tmp_path, postgres_url, redis_url):
    # The decisions benchmark empties its Redis database: one no test uses.
    bench_redis = redis_url.rsplit("/", 1)[0] + f"/{BENCH_REDIS_DB}"
    done = subprocess.run([sys.executable, "-m", "bench", "--size", "tiny", "--results", str(tmp_path),
                           "--database-url", postgres_url, "--redis-url", bench_redis], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)

    assert done.returncode == 0, done.stderr[-3000:]
    summary = done.stdout.split("\nbenchmark ", 1)[1]
    for name in BENCHMARKS:
        document = json.loads((tmp_path / f"{name}.json").read_text())
        assert document["benchmark"] == name and document["figures"]["size"] == "tiny"
        assert document["machine"]["cpus"] >= 1
        rows = document["figures"]["rows"]
        assert rows, name
        if name in ON_BOTH:
            assert {row["figure"].split()[0] for row in rows} == {"sqlite", "postgresql"}, name
        else:
            assert name in ON_POSTGRES and "sqlite" not in json.dumps(rows), name
        for row in rows:
            assert f"{name:<10} {row['figure']}" in summary
    ack = json.loads((tmp_path / "ack.json").read_text())["figures"]
    cells = [cell for key, cell in ack.items() if key.endswith(("c1", "c16"))]
    assert len(cells) == 6 and all(cell["a_a_p50"] > 0 and cell["a_a_p99"] > 0 for cell in cells)  # the noise, beside


def test_a_benchmark_can_be_chosen_and_an_unknown_one_is_refused(capsys):
    assert parse_args(["--only", "search", "sweep"]).only == ["search", "sweep"]
    with pytest.raises(SystemExit) as exited:
        parse_args(["--only", "nonsense"])
    assert exited.value.code == 2
    assert "invalid choice: 'nonsense'" in capsys.readouterr().err


@pytest.mark.timeout(600)
def test_the_instruction_count_runs_under_callgrind(tmp_path):
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        service_missing("valgrind", "not installed")  # a loud skip here, a failure in CI
    done = subprocess.run([sys.executable, "-m", "bench.ack_instructions", "--requests", "20", "--results",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=580, check=False)

    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads((tmp_path / "ack_instructions.json").read_text())["figures"]
    for kind in ("slash command", "button click", "modal submission"):
        assert figures[kind]["steward"] > 10_000 and figures[kind]["bare"] > 10_000, figures
        assert figures[kind]["ratio"] == pytest.approx(figures[kind]["steward"] / figures[kind]["bare"], rel=0.01)
    assert "instructions per ack" in done.stdout


def test_the_instruction_count_says_so_in_one_line_without_valgrind(monkeypatch, capsys):
    monkeypatch.setattr(ack_instructions.shutil, "which", lambda name: None)

    assert ack_instructions.main([]) == 1
    assert capsys.readouterr().err == "ack_instructions: valgrind (with callgrind_control) is not installed\n"
