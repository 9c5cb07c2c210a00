"""`steward export …` as users run it: formats, --out, the README's chain check, and refusals that write nothing.

Each test has its own migrated SQLite file (DATABASE_URL) under tmp_path and none of the developer's
Steward settings.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from steward import export_cli
from steward.cli import main
from tests.conftest import FIXED_NOW
from tests.factories import OWNER, REQUESTER, approve_request, classify_system, make_asset, make_request
from tests.test_cli import assert_one_line_error
from workflows.exports.bom import validation_errors
from workflows.exports.inventory import CSV_COLUMNS

README = Path(__file__).resolve().parents[1] / "README.md"
NOW = FIXED_NOW
HOUR = timedelta(hours=1)


@pytest.fixture(autouse=True)
def isolated(cli_home: Path) -> Path:
    """Every test here runs in an empty working directory with none of Steward's variables set."""
    return cli_home


@pytest.fixture
def engine(cli_engine):
    """The migrated SQLite file DATABASE_URL points at (instead of the shared two-backend fixture)."""
    return cli_engine


@pytest.fixture
def seeded(engine, policy):
    """A dataset, a model trained on it used by a high-risk system, a document, and one grant."""
    data = make_asset(engine, policy=policy, now=NOW, kind="dataset", name="Claims", team="Claims data",
                      contains_personal_data=True, details={"intended_use": "Training"})
    model = make_asset(engine, policy=policy, now=NOW, kind="model", name="Fraud scorer",
                       details={"task": "classification", "metrics": "AUC 0.9"}, lineage={"trained_on": [data.id]})
    system = make_asset(engine, policy=policy, now=NOW, kind="system", name="Claims triage",
                        lineage={"uses": [model.id]})
    make_asset(engine, policy=policy, now=NOW, kind="documentation", name="Fraud card",
               details={"doc_type": "model_card", "url": "https://docs.example.com/card"},
               lineage={"documents": [model.id]})
    other = make_asset(engine, policy=policy, now=NOW + 24 * HOUR, kind="model", name="Churn model")
    request = make_request(engine, model, policy=policy, now=NOW + 2 * HOUR, requester=REQUESTER)
    approve_request(engine, request, OWNER, now=NOW + 2 * HOUR)
    classify_system(engine, system, "high", policy=policy, now=NOW + 3 * HOUR)
    return {"data": data, "model": model, "system": system, "other": other}


def steward(*args: str) -> Result:
    """Run `steward <args>` in-process, stdout and stderr kept apart."""
    return CliRunner().invoke(main, list(args), catch_exceptions=True)


def ok(*args: str) -> str:
    result = steward(*args)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exc_info)
    assert result.stderr == ""
    return result.stdout


# ---- inventory -----------------------------------------------------------------------------------


def test_inventory_csv_and_json_to_stdout(seeded):
    rows = list(csv.DictReader(io.StringIO(ok("export", "inventory"))))
    assert list(rows[0]) == list(CSV_COLUMNS)
    by_slug = {row["slug"]: row for row in rows}
    assert set(by_slug) == {"claims", "fraud-scorer", "claims-triage", "fraud-card", "churn-model"}
    assert by_slug["fraud-scorer"]["lineage.trained_on"] == "claims"
    assert by_slug["claims"]["effective_tier"] == "high" and by_slug["churn-model"]["effective_tier"] == ""
    records = json.loads(ok("export", "inventory", "--format", "json"))
    assert {r["slug"]: r["details"].get("task") for r in records}["fraud-scorer"] == "classification"
    assert next(r for r in records if r["slug"] == "claims-triage")["risk_tier"] == "high"


def test_inventory_cyclonedx_to_a_file_passes_strict_validation(seeded, tmp_path):
    out = tmp_path / "bom.cdx.json"
    assert ok("export", "inventory", "--format", "cyclonedx", "--out", str(out)) == ""
    bom = json.loads(out.read_text(encoding="utf-8"))
    assert validation_errors(bom) == []
    components = {c["bom-ref"]: c for c in bom["components"]}
    assert components["fraud-scorer"]["modelCard"]["modelParameters"]["datasets"] == [{"ref": "claims"}]
    assert components["claims"]["data"][0]["governance"]["owners"][0] == {"contact": {"name": OWNER}}
    assert {"ref": "claims-triage", "dependsOn": ["fraud-scorer"]} in bom["dependencies"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".bom")] == []  # no temporary left


# ---- decisions -----------------------------------------------------------------------------------


def _readme_checker() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("### Checking the decision log yourself", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def _check_with_readme(tmp_path: Path, export: Path) -> subprocess.CompletedProcess:
    script = tmp_path / "check_chain.py"
    script.write_text(_readme_checker(), encoding="utf-8")
    return subprocess.run([sys.executable, str(script), str(export)], capture_output=True, text=True, timeout=60,
                          check=False)


def test_the_readme_snippet_checks_an_exported_chain_and_catches_an_edit(seeded, tmp_path):
    out = tmp_path / "log.jsonl"
    ok("export", "decisions", "--out", str(out))
    lines = out.read_text(encoding="utf-8").splitlines()
    entries = [json.loads(line) for line in lines]
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert set(entries[0]) == {"seq", "at", "actor", "action", "subject_type", "subject_id", "subject_slug",
                               "before", "after", "prev_hash", "hash"}
    checked = _check_with_readme(tmp_path, out)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == f"{len(entries)} entries, head {entries[-1]['hash']}"

    tampered = [dict(e) for e in entries]
    tampered[3]["actor"] = "U0SOMEONE"
    out.write_text("".join(json.dumps(e) + "\n" for e in tampered), encoding="utf-8")
    refused = _check_with_readme(tmp_path, out)
    assert refused.returncode != 0 and "entry 4 does not check out" in refused.stderr
    out.write_text("".join(json.dumps(e) + "\n" for e in entries[:2] + entries[3:]), encoding="utf-8")
    assert "entry 4 does not check out" in _check_with_readme(tmp_path, out).stderr  # one deleted


def test_decisions_csv_with_filters(seeded):
    everything = list(csv.DictReader(io.StringIO(ok("export", "decisions", "--format", "csv"))))
    assert [int(r["seq"]) for r in everything] == list(range(1, len(everything) + 1))
    about_model = list(csv.DictReader(io.StringIO(ok("export", "decisions", "--format", "CSV",
                                                     "--asset", "fraud-scorer"))))
    assert {r["subject_slug"] for r in about_model} == {"fraud-scorer"}
    assert {"asset.registered", "access.requested", "access.granted"} <= {r["action"] for r in about_model}
    lines = ok("export", "decisions", "--since", "2026-03-03", "--until", "2026-03-03").splitlines()
    assert [json.loads(line)["subject_slug"] for line in lines] == ["churn-model"]
    high = [json.loads(line) for line in ok("export", "decisions", "--tier", "HIGH").splitlines()]
    assert {e["subject_slug"] for e in high} == {"claims", "fraud-scorer", "claims-triage"}
    assert ok("export", "decisions", "--tier", "limited") == ""


# ---- access --------------------------------------------------------------------------------------


def test_access_now_and_as_of(seeded):
    header = "grant_id,asset,grantee,level,granted_at,expires_at,approved_by,approval,emergency,status"
    now_rows = ok("export", "access").splitlines()
    assert now_rows[0] == header
    granted = (f"1,fraud-scorer,{REQUESTER},read,2026-03-02T11:00:00.000000+00:00,"
               f"2026-03-03T11:00:00.000000+00:00,{OWNER},,false,active")
    assert now_rows[1:] == [granted]
    assert ok("export", "access", "--as-of", "2026-03-02T10:59:59Z").splitlines() == [header]
    assert ok("export", "access", "--as-of", "2026-03-02").splitlines() == now_rows


# ---- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "expected"), [
    (("inventory", "--format", "xml"), ("unknown format 'xml'", "csv, json or cyclonedx")),
    (("decisions", "--format", "json"), ("unknown format 'json'", "jsonl or csv")),
    (("access", "--format", "jsonl"), ("unknown format 'jsonl'", "csv")),
    (("decisions", "--since", "last tuesday"), ("bad date for --since", "'last tuesday'")),
    (("decisions", "--until", "2026-02-30"), ("bad date for --until",)),
    (("access", "--as-of", "soon"), ("bad date for --as-of",)),
    (("decisions", "--since", "2026-03-05", "--until", "2026-03-01"), ("--since is after --until",)),
    (("decisions", "--tier", "extreme"), ("unknown tier 'extreme'", "minimal, limited, high, prohibited")),
    (("decisions", "--asset", "fraud-scorr"), ("No asset is called `fraud-scorr`", "Did you mean fraud-scorer")),
])
def test_bad_input_is_one_line_and_writes_nothing(seeded, tmp_path, args, expected):
    fresh = tmp_path / "fresh.out"
    kept = tmp_path / "kept.out"
    kept.write_text("the previous export\n", encoding="utf-8")
    for out in (fresh, kept):
        result = steward("export", *args, "--out", str(out))
        assert_one_line_error(result, *expected)
        assert result.stdout == ""
    assert not fresh.exists()
    assert kept.read_text(encoding="utf-8") == "the previous export\n"
    assert sorted(p.name for p in tmp_path.iterdir() if ".out." in p.name) == []


def test_an_unmigrated_database_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{(tmp_path / 'empty.db').as_posix()}")
    assert_one_line_error(steward("export", "decisions"), "run `steward db upgrade` first")


def test_a_failure_while_writing_leaves_the_old_file(seeded, tmp_path, monkeypatch):
    out = tmp_path / "log.jsonl"
    out.write_text("yesterday's export\n", encoding="utf-8")

    def broken(entry):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_cli.decisions_export, "jsonl_line", broken)
    assert_one_line_error(steward("export", "decisions", "--out", str(out)), "No space left on device")
    assert out.read_text(encoding="utf-8") == "yesterday's export\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".log.jsonl")] == []


# ---- progress ------------------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_progress_bar_shows_only_on_a_terminal_and_for_many_rows(monkeypatch):
    def shown(stream: io.StringIO, total: int) -> str:
        monkeypatch.setattr(sys, "stderr", stream)
        with export_cli._progress(iter(range(total)), lambda: total, "entries") as rows:
            assert list(rows) == list(range(total))
        return stream.getvalue()

    many = export_cli.PROGRESS_MIN_ROWS + 1
    assert "entries" in shown(_Terminal(), many)
    assert shown(_Terminal(), export_cli.PROGRESS_MIN_ROWS) == ""
    assert shown(io.StringIO(), many) == ""
