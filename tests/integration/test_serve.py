"""The online decision service over real HTTP: `retention serve` in its own process against the session's emulator
and champions, spoken to by httpx. Health and readiness, a decision with a message that passes the shield, 422s that
name the field, bodies over the limit refused, customer text kept out of the logs, and concurrent requests that
never spend more than the online budget."""
from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

import days
from retention.config import REPO_ROOT
from retention.hashing import holdout_mask
from retention.infra import bq
from retention.serve import budget

DAY = dt.date(2026, 7, 1)
"""The day of the single requests (its budget is never exhausted: BUDGET is per day)."""
RUSH = dt.date(2026, 7, 2)
"""The day of the concurrent rush, whose budget runs out."""
BUDGET = 400.0
"""The online daily budget of the served process: a few offers' worth (a customer_value is a year of charges)."""
PREFIX = "SV-"
NAME = "Quillfeather"
"""A name that appears nowhere else: if it reaches the server's log, customer text leaked."""
FACTS = {
    "customer_id": "SV-0002-ORFBO", "name": NAME, "time_zone": "America/New_York", "channel": "sms",
    "gender": "Female", "tenure_months": 2, "plan": "fiber_optic", "contract": "month_to_month",
    "payment_method": "electronic_check", "monthly_charges": 95.5, "total_charges": 191.0,
    "senior_citizen": False, "partner": False, "dependents": False, "phone_service": True, "multiple_lines": False,
    "online_security": False, "online_backup": False, "device_protection": False, "tech_support": False,
    "streaming_tv": False, "streaming_movies": False, "paperless_billing": True,
}
"""A new month-to-month fiber customer paying by electronic check: high churn risk, worth an offer."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(log_path: Path, **env: str) -> Iterator[str]:
    """`retention serve` on a free loopback port with the session's environment plus `env`; yields its base URL."""
    port = _free_port()
    with open(log_path, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "retention.cli", "serve", "--port", str(port)], cwd=REPO_ROOT,
                                env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "no /healthz within 180 s:\n" + log_path.read_text()[-3000:]
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(bq_client, cfg, champions, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """The service with an online budget of BUDGET, and the customers SV-... in the DAY snapshot."""
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    with days.seeded(bq_client, cfg, PREFIX, 12, [DAY], start=500):
        with serving(log_path, RETENTION_ONLINE_DAILY_BUDGET=str(BUDGET)) as url:
            yield url, log_path


def _retain(url: str, facts: dict, ds: dt.date = DAY, **kw) -> httpx.Response:
    return httpx.post(f"{url}/retain", json={"customer_facts": facts, "ds": ds.isoformat()}, timeout=60, **kw)


def _logged(bq_client, cfg, day: dt.date):
    return bq.query(bq_client, cfg, f"SELECT * FROM `{cfg.table('online_decisions')}` WHERE decision_date = @d",
                    d=day)


def test_healthz_and_readyz(server):
    url, _ = server
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{url}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert "/retain" in httpx.get(f"{url}/openapi.json").json()["paths"]


def test_retain_decides_with_a_message_that_passes_the_shield_and_logs_it(server, bq_client, cfg):
    url, _ = server
    # the policy samples its action by a hash of the customer id: the first of a few risky customers it contacts
    for customer_id in (f"SV-ONE-{i}" for i in range(12)):
        r = _retain(url, FACTS | {"customer_id": customer_id})
        assert r.status_code == 200, r.text
        if r.json()["decision"]["contact"]:
            break
    out = r.json()
    assert set(out) == {"decision", "message", "send_at", "safety", "model_versions"}
    decision = out["decision"]
    assert decision["contact"] and decision["reason"] == "contact" and decision["offer_level"] in (0, 1, 2, 3)
    assert 0 < decision["propensity"] <= 1 and decision["followup_days"] >= 0
    assert NAME in out["message"] and out["safety"]["violations"] == 0 and out["safety"]["checks"]["action"] == "none"
    assert dt.datetime.fromisoformat(out["send_at"]).date() >= DAY
    assert set(out["model_versions"]) == {"risk", "accept", "policy", "message"}
    assert "decide;dur=" in r.headers["server-timing"] and "bq;dur=" in r.headers["server-timing"]
    logged = _logged(bq_client, cfg, DAY)
    row = logged[logged["customer_id"] == customer_id].iloc[0]
    assert row["contact"] and row["facts_source"] == "request" and len(row["facts_hash"]) == 64
    assert row["propensity"] == pytest.approx(decision["propensity"]) and row["offer_level"] == decision["offer_level"]
    assert row["decided_at"].date() == dt.datetime.now(dt.timezone.utc).date()


def test_a_customer_id_alone_is_looked_up_in_the_days_snapshot(server, bq_client, cfg):
    url, _ = server
    snapshot = days.customers(cfg, PREFIX, 12, DAY, start=500)
    customer_id = snapshot["customer_id"].iloc[3]
    r = _retain(url, {"customer_id": customer_id})
    assert r.status_code == 200, r.text
    logged = _logged(bq_client, cfg, DAY)
    assert logged.loc[logged["customer_id"] == customer_id, "facts_source"].tolist() == ["snapshot"]
    assert _retain(url, {"customer_id": "SV-nobody"}).status_code == 404


def test_bad_facts_are_a_422_naming_each_field_at_fault(server):
    url, _ = server

    def fields(facts: dict) -> set[str]:
        r = _retain(url, facts)
        assert r.status_code == 422, r.text
        return {str(e["loc"][-1]) for e in r.json()["detail"]}

    assert fields(FACTS | {"monthly_charges": -5.0}) == {"monthly_charges"}
    assert "monthly_charges" in fields({"customer_id": "SV-1", "monthly_charges": -5.0})
    assert fields(FACTS | {"time_zone": "Mars/Olympus"}) == {"time_zone"}  # the suite's rules, after the types
    assert fields(FACTS | {"tenure_months": "two", "senior_citizen": 1}) == {"tenure_months", "senior_citizen"}
    assert fields(FACTS | {"montly_charges": 9.0}) == {"montly_charges"}
    assert "channel" in fields({k: v for k, v in FACTS.items() if k != "channel"})
    r = httpx.post(f"{url}/retain", json={"customer_facts": FACTS, "ds": "2026-13-01"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "ds"]


def test_a_body_over_the_limit_is_refused(server, cfg):
    url, _ = server
    big = FACTS | {"name": "x" * (cfg.serve_max_body_bytes + 1)}
    assert _retain(url, big).status_code == 413
    # without a Content-Length (chunked): refused as it streams in
    body = httpx.Request("POST", "/", json={"customer_facts": big}).content
    chunks = (body[i:i + 1024] for i in range(0, len(body), 1024))
    r = httpx.post(f"{url}/retain", content=chunks, headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_concurrent_requests_never_overspend_the_online_budget(server, bq_client, cfg):
    url, _ = server
    ids = [f"SV-RUSH-{i:03d}" for i in range(200)]
    ids = [i for i, held in zip(ids, holdout_mask(ids, cfg.holdout_share)) if not held][:32]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda i: _retain(url, FACTS | {"customer_id": i}, RUSH), ids))
    assert [r.status_code for r in responses] == [200] * len(ids), [r.text for r in responses if r.status_code != 200]
    logged = _logged(bq_client, cfg, RUSH)
    assert sorted(logged["customer_id"]) == sorted(ids)
    costly = logged[logged["offer_cost"] > 0]
    assert 0 < costly["offer_cost"].sum() <= BUDGET
    assert budget.spent(bq_client, cfg, RUSH) == pytest.approx(costly["offer_cost"].sum())
    assert len(costly) < len(ids)  # the budget did bind: later customers got no offer that costs
    assert (logged["offer_cost"].max() <= BUDGET) and logged["propensity"].between(0, 1).all()


def test_customer_text_never_reaches_the_log(server):
    url, log_path = server
    assert _retain(url, FACTS | {"customer_id": "SV-LOG-1"}).status_code == 200
    assert _retain(url, FACTS | {"monthly_charges": -1.0}).status_code == 422
    text = log_path.read_text()
    assert "POST /retain" in text and "decision " in text
    assert NAME not in text and "SV-LOG-1" not in text


@pytest.mark.parametrize("case", ["no champions", "BigQuery unreachable"])
def test_readyz_is_503_with_the_reason(case, cfg, champions, tmp_path):
    if case == "no champions":
        env = {"RETENTION_ARTIFACT_ROOT": str(tmp_path)}
    else:
        env = {"RETENTION_BQ_ENDPOINT": f"http://127.0.0.1:{_free_port()}", "RETENTION_RISK_MODEL_URI": str(
            champions["risk"]), "RETENTION_ACCEPT_MODEL_URI": str(champions["accept"])}
    with serving(tmp_path / "serve.log", **env) as url:
        r = httpx.get(f"{url}/readyz", timeout=30)
        assert r.status_code == 503 and {"no champions": "champion", "BigQuery unreachable": "unreachable"}[case] \
            in r.json()["reason"]
        assert _retain(url, FACTS).status_code == 503
