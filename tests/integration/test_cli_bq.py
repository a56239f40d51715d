"""The command line against the session's embedded BigQuery: BigQuery's errors as one line, exit codes, limits."""
from __future__ import annotations

import subprocess
import sys

import pytest

from retention.config import REPO_ROOT


def _cli(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "retention.cli", *argv], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120, **kwargs)


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize("sql, message", [
    ("SELEC 1", "retention query: BigQuery: Syntax error"),
    ("SELECT * FROM `local.retention.no_such_table`", "retention query: BigQuery: Not found: Table"),
])
def test_bad_sql_or_a_missing_table_is_one_line(bq_client, sql, message):
    assert _one_error_line(_cli("query", sql)).startswith(message)


def test_decide_for_an_unknown_customer_is_one_line(bq_client):
    line = _one_error_line(_cli("decide", "--customer-id", "NOPE-1", "--ds", "2031-01-01"))
    assert line.startswith("retention decide: customer_id='NOPE-1' is not in ")


def test_summary_and_report_for_a_day_that_never_ran_both_exit_1(bq_client):
    assert "no run recorded in plan_runs for 2031-01-01" in _one_error_line(_cli("summary", "--ds", "2031-01-01"))
    assert "has the day run?" in _one_error_line(_cli("report", "--ds", "2031-01-01"))


def test_query_prints_at_most_its_row_limit_and_says_so(bq_client):
    from retention.infra import bq

    done = _cli("query", "SELECT x FROM UNNEST(GENERATE_ARRAY(1, 1500)) AS x")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == f"(first {bq.USER_QUERY_ROWS:,} of 1,500 rows)" and len(lines) == bq.USER_QUERY_ROWS + 2


def test_a_reader_that_leaves_early_stops_the_command_quietly(bq_client):
    proc = subprocess.Popen([sys.executable, "-m", "retention.cli", "query",
                             "SELECT x FROM UNNEST(GENERATE_ARRAY(1, 1000)) AS x"], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # as `| head` does once it has its lines
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141 and "Traceback" not in err and "Exception ignored" not in err


def test_bq_status_is_zero_with_the_pid_when_up(bq_client):
    done = _cli("bq", "status")
    assert done.returncode == 0 and " up on " in done.stdout and "; pid " in done.stdout
