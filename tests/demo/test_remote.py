"""`steward sandbox send` explains, in one line, a demo that is not there or not answering."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from steward.cli import main
from steward.sandbox.remote import read_connection, write_connection


def send(home: Path, *args: str):
    return CliRunner().invoke(main, ["sandbox", "send", "--home", str(home), *args])


def test_no_demo_in_the_folder(tmp_path: Path):
    result = send(tmp_path, "--as", "dan", "/steward mine")
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: no running demo in {tmp_path}: start one with `steward demo --serve`"


def test_a_demo_that_stopped_answering(tmp_path: Path):
    write_connection(tmp_path, bot_url="http://127.0.0.1:9", responses_url="http://127.0.0.1:9/response/",
                     secret="s3cret-value", people={"dan": "U0DAN0001"})
    result = send(tmp_path, "--as", "dan", "/steward mine")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: cannot reach the demo's bot at http://127.0.0.1:9: is `steward demo --serve` still running?"]


def test_only_steward_commands_are_sent(tmp_path: Path):
    write_connection(tmp_path, bot_url="http://127.0.0.1:9", responses_url="http://127.0.0.1:9/response/",
                     secret="s3cret-value", people={"dan": "U0DAN0001"})
    result = send(tmp_path, "--as", "dan", "/giphy cats")
    assert result.exit_code == 1 and "only /steward commands" in result.output


def test_a_corrupt_connection_file_is_named(tmp_path: Path):
    (tmp_path / "sandbox.json").write_text(json.dumps({"bot_url": 1}), encoding="utf-8")
    with pytest.raises(ValueError, match="is not a demo connection file"):
        read_connection(tmp_path)
