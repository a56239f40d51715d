"""The command line without a warehouse: one clear line and a non-zero exit for each user error, help everywhere."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest

from retention import cli
from retention.config import REPO_ROOT


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as stop:
        cli.main(list(argv))
    out, err = capsys.readouterr()
    code = stop.value.code
    return (code if isinstance(code, int) else 1), out, err if isinstance(code, int) else str(code)


@pytest.fixture
def no_emulator(monkeypatch, tmp_path):
    """The configuration points at a closed port and an empty artifact root."""
    monkeypatch.setenv("RETENTION_BQ_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("RETENTION_BQ_GRPC_PORT", str(_closed_port()))
    monkeypatch.setenv("RETENTION_ARTIFACT_ROOT", str(tmp_path))
    return tmp_path


def test_a_bad_date_names_the_option_and_the_format(capsys):
    code, _, err = _run(capsys, "summary", "--ds", "2026-13-01")
    assert code == 2
    assert "argument --ds: '2026-13-01' is not a date (YYYY-MM-DD)" in err
    assert "_day" not in err


def test_every_ds_option_has_help_text():
    actions = cli.parser()._subparsers._group_actions[0].choices
    missing = [name for name, sub in actions.items() for a in sub._actions if "--ds" in a.option_strings and not a.help]
    assert missing == []


def test_deploy_help_works(capsys):
    code, out, _ = _run(capsys, "deploy", "--help")
    assert code == 0 and "usage: retention deploy" in out and "composer" in out


def test_unknown_options_are_still_refused(capsys):
    code, _, err = _run(capsys, "summary", "--nope")
    assert code == 2 and "unrecognized arguments: --nope" in err


@pytest.mark.parametrize("facts, message", [
    ("{not json", "--json is not valid JSON"),
    ("[1, 2]", "--json must be an object of customer facts, not list"),
    ('{"customer_id": "X-1"}', "retention decide: customer facts: field "),
])
def test_decide_with_bad_facts_is_one_line(capsys, no_emulator, facts, message):
    code, out, err = _run(capsys, "decide", "--json", facts, "--ds", "2026-11-20")
    assert code == 1 and out == ""
    assert message in err and "\n" not in err.strip() and "Traceback" not in err


def test_with_the_emulator_down_query_fails_in_seconds_naming_the_fix(no_emulator):
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "retention.cli", "query", "SELECT 1"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert time.monotonic() - start < 10
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "the embedded BigQuery is not running: `retention bq up`" in lines[0]


@pytest.mark.parametrize("argv", [["summary"], ["plan"], ["decide", "--customer-id", "X"], ["seed"]])
def test_every_bigquery_command_fails_at_once_when_the_emulator_is_down(capsys, no_emulator, argv):
    start = time.monotonic()
    code, _, err = _run(capsys, *argv, "--ds", "2026-11-20")
    assert time.monotonic() - start < 10
    assert code == 1 and "the embedded BigQuery is not running: `retention bq up`" in err


def test_report_for_a_day_that_never_ran_exits_non_zero_like_summary(capsys, no_emulator):
    code, out, err = _run(capsys, "report", "--ds", "2026-11-20")
    assert code == 1 and out == ""
    assert err.startswith("retention report: no validation results for 2026-11-20") and "has the day run?" in err


def test_bq_status_exits_non_zero_when_down_and_shows_no_other_emulators_pid(capsys, no_emulator):
    from retention.infra import emulator

    (no_emulator / "bq").mkdir()
    (no_emulator / "bq" / "emulator.pid").write_text(f"{os.getpid()} 1")  # alive, but started for port 1
    code, out, err = _run(capsys, "bq", "status")
    assert code == 1 and out == ""
    assert "down" in err and "`retention bq up`" in err and str(os.getpid()) not in err
    assert emulator.pid(emulator.Emulator(no_emulator / "bq", rest_port=1, grpc_port=2)) == os.getpid()


def test_command_and_ds_become_job_labels_unless_configured():
    from retention.config import Config

    args = cli.parser().parse_args(["query", "--ds", "2026-11-20"])
    assert cli._labelled(Config(), args).bq_labels == "command=query,ds=2026-11-20"
    assert cli._labelled(Config(bq_labels="team=crm"), args).bq_labels == "team=crm"


def test_table_left_aligns_text_and_right_aligns_numbers():
    text = cli._table(pd.DataFrame({"name": ["a", "bbbb"], "n": [1, 1000]}))
    assert text.splitlines()[1:] == ["a       1", "bbbb 1000"]
