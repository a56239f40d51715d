"""The Airflow UI in a real browser: a three-day backfill from the Trigger form, one day cleared and replanned,
and that day's Data Docs opened offline.

Debian's chromium driven by Playwright (a browser download by Playwright itself cannot work offline): the binary
is RETENTION_CHROMIUM, else `chromium` on PATH; `make browser` installs both.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from retention.config import REPO_ROOT

pytestmark = pytest.mark.browser

DAYS = [dt.date(2026, 1, 5), dt.date(2026, 1, 6), dt.date(2026, 1, 7)]
CUSTOMERS = 200
DATASET = "browser_ui"
"""The test's own dataset: seeding truncates suppression, which other tests of the session share."""
RUNS_TIMEOUT_S = 1500


def chromium() -> str:
    path = os.environ.get("RETENTION_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "no Chromium for the browser test: `make browser`, or set RETENTION_CHROMIUM to a Chromium binary"
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ui_cfg(cfg, bq_client, champions):
    """The session's emulator and champions, this test's dataset, three seeded days."""
    from retention.cli import cmd_seed
    from retention.infra import bq

    ui = dataclasses.replace(cfg, dataset=DATASET)
    bq.ensure_tables(bq_client, ui)
    cmd_seed(ui, argparse.Namespace(ds=DAYS[-1].isoformat(), days=len(DAYS), synthetic=CUSTOMERS, seed=42))
    return ui


class Airflow:
    """`airflow standalone` on a free loopback port, as `make airflow` starts it, and its REST API."""

    def __init__(self, home: Path, cfg):
        self.port = _free_port()
        self.home = home
        self.url = f"http://localhost:{self.port}"
        self.env = {
            **os.environ, "PATH": f"{REPO_ROOT / '.venv' / 'bin'}:{os.environ['PATH']}", "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            # no scheduled run: unpaused by the backfill, the DAG's latest cron run raced the backfill's runs and the
            # scheduler died on SQLite (StaleDataError on dag_run, 2026-12-07); backfill and cleared runs still start
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "RETENTION_DATASET": cfg.dataset, "RETENTION_ARTIFACT_ROOT": str(cfg.artifacts),
            "RETENTION_BQ_ENDPOINT": cfg.bq_endpoint, "RETENTION_BQ_GRPC_PORT": str(cfg.bq_grpc_port),
        }
        self.log = open(home / "standalone.log", "wb")
        self.proc = subprocess.Popen([str(REPO_ROOT / ".venv" / "bin" / "airflow"), "standalone"], env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.token = ""

    def wait_ready(self, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"airflow standalone exited; see {self.log.name}"
            try:
                health = json.load(urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=5))
                if all(health[c]["status"] == "healthy" for c in ("scheduler", "triggerer", "dag_processor")):
                    self.token = self._token()
                    if self.get("/api/v2/dags/retention_daily", ok=(200, 404)).get("dag_id"):
                        return
            except (urllib.error.URLError, ConnectionError, KeyError, TypeError):
                pass
            time.sleep(2)
        raise TimeoutError(f"the Airflow UI was not ready in {timeout_s:.0f} s; see {self.log.name}")

    @property
    def password(self) -> str:
        return json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]

    def _token(self) -> str:
        body = json.dumps({"username": "admin", "password": self.password}).encode()
        request = urllib.request.Request(f"{self.url}/auth/token", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        return json.load(urllib.request.urlopen(request, timeout=10))["access_token"]

    def get(self, path: str, ok: tuple[int, ...] = (200,)) -> dict:
        request = urllib.request.Request(f"{self.url}{path}", headers={"Authorization": f"Bearer {self.token}"})
        try:
            return json.load(urllib.request.urlopen(request, timeout=30))
        except urllib.error.HTTPError as err:
            if err.code in ok:
                return {}
            raise

    def runs(self) -> dict[str, dict]:
        """The daily DAG's runs by logical day."""
        runs = self.get("/api/v2/dags/retention_daily/dagRuns?limit=100")["dag_runs"]
        return {r["logical_date"][:10]: r for r in runs}

    def tries(self, run_id: str) -> dict[str, tuple[str, int]]:
        path = f"/api/v2/dags/retention_daily/dagRuns/{urllib.parse.quote(run_id)}/taskInstances"
        return {t["task_id"]: (t["state"], t["try_number"]) for t in self.get(path)["task_instances"]}

    def failure(self, run_id: str) -> str:
        """The failed tasks of a run with the end of their last log."""
        failed = [task for task, (state, _) in self.tries(run_id).items() if state == "failed"]
        logs = [sorted((self.home / "logs" / "dag_id=retention_daily" / f"run_id={run_id}" / f"task_id={task}")
                       .rglob("*.log")) for task in failed]
        tails = ["".join(found[-1].read_text().splitlines(keepends=True)[-15:]) if found else "(no log)"
                 for found in logs]
        return f"{run_id} failed in {failed}:\n" + "\n".join(tails)

    def wait_runs(self, days: list[dt.date], done: callable) -> dict[str, dict]:
        """Poll until the runs of `days` are all successful and `done(runs)`; fail at once when one fails."""
        deadline = time.monotonic() + RUNS_TIMEOUT_S
        while time.monotonic() < deadline:
            runs = self.runs()
            mine = [runs.get(d.isoformat()) for d in days]
            failed = [r["dag_run_id"] for r in mine if r and r["state"] == "failed"]
            assert not failed, "\n".join(self.failure(run_id) for run_id in failed)
            if all(r and r["state"] == "success" for r in mine) and done(runs):
                return runs
            time.sleep(5)
        raise TimeoutError({d.isoformat(): runs.get(d.isoformat(), {}).get("state") for d in days})

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def airflow(ui_cfg, tmp_path_factory):
    ui = Airflow(tmp_path_factory.mktemp("airflow_ui"), ui_cfg)
    try:
        ui.wait_ready()
        yield ui
    finally:
        ui.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # root in a container has no user namespace for Chromium's sandbox
        b = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        yield b
        b.close()


def _log_in(page, airflow: Airflow) -> None:
    page.goto(airflow.url)
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", airflow.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url, timeout=60_000)


def _pick(page, dialog, index: int, day: dt.date) -> None:
    """One of the Backfill form's date-time pickers: type the date and 05:00 (the schedule's time, UTC)."""
    dialog.get_by_test_id("datetime-input").nth(index).click()
    picker = page.locator("[data-scope=popover][data-part=content][data-state=open]")
    picker.get_by_placeholder("YYYY/MM/DD").fill(day.strftime("%Y/%m/%d"))
    picker.get_by_placeholder("HH:mm").fill("05:00")
    page.keyboard.press("Escape")


def _backfill(page, airflow: Airflow, first: dt.date, last: dt.date) -> None:
    page.goto(f"{airflow.url}/dags/retention_daily")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.locator("[role=dialog][data-scope=dialog]")
    dialog.get_by_text("Backfill", exact=True).click()
    _pick(page, dialog, 0, first)
    _pick(page, dialog, 1, last)
    dialog.get_by_text(f"{(last - first).days + 1} runs will be triggered").wait_for()
    # ticked by default and needed: the runs of a paused DAG's backfill stay queued (README)
    assert dialog.get_by_role("checkbox", name=re.compile("Unpause retention_daily on trigger")).is_checked()
    # one run at a time (the form's default, typed in, which also closes the last date picker)
    dialog.locator("input[name=max_active_runs]").fill("1")
    dialog.get_by_role("button", name="Run Backfill").click()
    dialog.wait_for(state="hidden")


def _clear(page, airflow: Airflow, run_id: str) -> None:
    page.goto(f"{airflow.url}/dags/retention_daily/runs/{urllib.parse.quote(run_id)}")
    page.get_by_role("button", name="Press shift+c to clear").click()  # the run's Clear button
    dialog = page.locator("[role=dialog][data-scope=dialog]")
    dialog.get_by_role("button", name="Confirm").click()
    dialog.wait_for(state="hidden")


def _partitions(bq_client, cfg) -> dict[str, tuple[int, int]]:
    from retention.infra import bq

    rows = bq.query(bq_client, cfg, f"SELECT plan_date, COUNT(*) AS n, COUNT(DISTINCT customer_id) AS customers "
                                    f"FROM `{cfg.table('contact_plan')}` WHERE plan_date BETWEEN @a AND @b "
                                    "GROUP BY plan_date ORDER BY plan_date", a=DAYS[0], b=DAYS[-1])
    return {str(r.plan_date): (int(r.n), int(r.customers)) for r in rows.itertuples()}


def _finished(bq_client, cfg, day: dt.date) -> list:
    from retention.infra import bq

    return bq.query(bq_client, cfg, f"SELECT run_id, finished_at FROM `{cfg.table('plan_runs')}` "
                                    "WHERE plan_date = @ds", ds=day).to_dict("records")


# `browser` first: without Chromium the test fails before it seeds, trains or starts Airflow
def test_backfill_clear_and_data_docs_from_the_browser(browser, airflow, ui_cfg, bq_client):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    _log_in(page, airflow)

    # a three-day backfill from the Trigger form: three partitions, each once
    _backfill(page, airflow, DAYS[0], DAYS[-1])
    runs = airflow.wait_runs(DAYS, lambda runs: True)
    assert {runs[d.isoformat()]["run_type"] for d in DAYS} == {"backfill"}
    assert _partitions(bq_client, ui_cfg) == {d.isoformat(): (CUSTOMERS, CUSTOMERS) for d in DAYS}
    before = _finished(bq_client, ui_cfg, DAYS[1])
    assert len(before) == 1

    # clear the middle day: its run plans it again and replaces its partition, never adds to it
    middle = runs[DAYS[1].isoformat()]["dag_run_id"]
    _clear(page, airflow, middle)
    airflow.wait_runs([DAYS[1]], lambda runs: airflow.tries(middle)["publish"] == ("success", 2))
    assert _partitions(bq_client, ui_cfg) == {d.isoformat(): (CUSTOMERS, CUSTOMERS) for d in DAYS}
    after = _finished(bq_client, ui_cfg, DAYS[1])
    assert len(after) == 1 and after[0]["run_id"] == middle and after[0]["finished_at"] > before[0]["finished_at"]

    # the day's Data Docs with no network at all: the validation table is rendered, rows link to their pages
    offline = browser.new_context()
    requested = []
    offline.route(re.compile(r"^https?://"), lambda route: (requested.append(route.request.url), route.abort()))
    docs = offline.new_page()
    errors = []
    docs.on("pageerror", lambda err: errors.append(str(err)))
    docs.goto((ui_cfg.artifacts / "reports" / DAYS[1].isoformat() / "data_docs" / "index.html").as_uri())
    rows = docs.locator("#section-1-content-block-2-1-body-table tbody tr")
    assert rows.count() >= 4  # four suites a run: the input's three and the plan's
    table = docs.locator("#section-1-content-block-2-1-body-table").inner_text()
    assert all(suite in table for suite in ("customers", "contact_history", "suppression", "contact_plan"))
    rows.first.click()
    docs.wait_for_url(re.compile(r"/validations/"))
    assert "Data asset: " in docs.content() and "Data asset: None" not in docs.content()
    assert requested == [] and errors == []
