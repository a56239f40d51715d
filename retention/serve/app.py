"""The online decision service: FastAPI on uvicorn, champions loaded once at start-up.

    retention serve --port 8000                  # or `make serve`; OpenAPI docs at /docs
    curl -s localhost:8000/retain -H 'content-type: application/json' -d '{"customer_facts": {"customer_id": ...}}'

GET /healthz: the process is up. GET /readyz: champions loaded and BigQuery reachable, else 503 with the reason.
POST /retain: one customer's decision, message and send time, the daily plan's one-customer path under the online
daily budget, logged to `online_decisions`. Facts that break the `customers` contract or its suite are a 422 naming
each field; a customer id alone is looked up in the day's snapshot. Customer text never reaches the logs.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import threading
import traceback
from typing import Any, AsyncIterator

from fastapi import FastAPI, HTTPException, Response
from fastapi.responses import JSONResponse
from google.api_core import exceptions as google_errors
from google.cloud import bigquery
from pydantic import BaseModel, ConfigDict, Field, create_model
from requests import exceptions as http_errors
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from retention.config import REPO_ROOT, Config
from retention.infra import bq
from retention.pipeline import retain
from retention.serve import decisions

log = logging.getLogger("retention.serve")

PYTHON = {"STRING": str, "INT64": int, "FLOAT64": float, "BOOL": bool, "DATE": dt.date}
"""BigQuery type of a customer fact -> its type in the request (strict: no "12" for 12, no 1 for true)."""
EXAMPLE = {
    "customer_id": "0002-ORFBO", "name": "Maya", "time_zone": "America/New_York", "channel": "sms",
    "gender": "Female", "tenure_months": 2, "plan": "fiber_optic", "contract": "month_to_month",
    "payment_method": "electronic_check", "monthly_charges": 95.5, "total_charges": 191.0,
    "senior_citizen": False, "partner": False, "dependents": False, "phone_service": True, "multiple_lines": False,
    "online_security": False, "online_backup": False, "device_protection": False, "tech_support": False,
    "streaming_tv": False, "streaming_movies": False, "paperless_billing": True,
}
"""A new month-to-month fiber customer: the docs' example, and the decision that warms the champions at start-up."""
UNAVAILABLE = (google_errors.GoogleAPICallError, google_errors.RetryError, http_errors.ConnectionError,
               http_errors.Timeout, ConnectionError)
"""BigQuery could not be reached or refused the call: a 503 the caller may retry, not a 500."""


# request and response


def _ranges() -> dict[str, dict[str, float]]:
    """Field -> {ge, le} of the suite's range rules: checked with the types, so one 422 names a negative charge
    beside a malformed field (the facts check after it stops at the first kind of problem)."""
    suite = json.loads((REPO_ROOT / "expectations" / "customers.json").read_text())
    return {s["kwargs"]["column"]: {"ge": s["kwargs"].get("min_value"), "le": s["kwargs"].get("max_value")}
            for s in suite if s["expectation"] == "expect_column_values_to_be_between"}


CustomerFacts = create_model(
    "CustomerFacts", __config__=ConfigDict(extra="forbid", strict=True),
    customer_id=(str, Field(min_length=1, max_length=64, description="alone: the facts of the day's snapshot")),
    **{name: (PYTHON[kind] | None, Field(None, **_ranges().get(name, {})))
       for name, kind in retain.fact_types().items() if name != "customer_id"},
)
"""One customer's facts: the `customers` columns, history optional (a never-contacted customer when left out)."""


class RetainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"customer_facts": EXAMPLE}]})
    customer_facts: CustomerFacts
    ds: dt.date | None = Field(None, description="the day decided for (default: today, UTC)")


class Decision(BaseModel):
    contact: bool
    offer_level: int | None = Field(description="0-3 (0/5/10/15 %); null without contact")
    offer_pct: float | None
    followup_days: int | None
    reason: str = Field(description="contact, or the rule that stopped it (holdout, cooldown, suppressed, ...)")
    propensity: float = Field(description="probability the policy gave this action (off-policy evaluation)")


class Safety(BaseModel):
    violations: int = Field(description="shield checks the message fails as sent (0: it passes)")
    checks: dict[str, str] = Field(description="what each shield check found on the generated message, and the action")


class RetainResponse(BaseModel):
    decision: Decision
    message: str | None
    send_at: dt.datetime | None = Field(description="UTC, outside the customer's quiet hours")
    safety: Safety
    model_versions: dict[str, str]


# the service


def create_app(cfg: Config) -> FastAPI:
    """The service for `cfg`: champions loaded (and one decision made, to warm them) before the first request."""
    state: dict[str, Any] = {"not_ready": "starting"}
    clients: dict[int, bigquery.Client] = {}

    def client() -> bigquery.Client:
        """One BigQuery client per worker thread (a client's HTTP session is not shared between threads)."""
        thread = threading.get_ident()
        if thread not in clients:
            clients[thread] = bq.client(cfg)
        return clients[thread]

    def load() -> None:
        missing = [name for name in ("risk", "accept") if not (cfg.model_dir(name) / "metrics.json").exists()]
        if missing:
            state["not_ready"] = f"no {' or '.join(missing)} champion in {cfg.artifacts / 'models'}"
            return
        try:
            for model in retain.champions(str(cfg.model_dir("risk")), str(cfg.model_dir("accept"))):
                # one row per request: XGBoost's OpenMP threads cost more than they save (half the decision's time)
                model.booster_.set_params(n_jobs=1)
            retain.decide_one(cfg, EXAMPLE, dt.datetime.now(dt.timezone.utc).date().isoformat())
        except (OSError, ValueError) as err:
            state["not_ready"] = f"champions failed to load: {type(err).__name__}: {err}"
            return
        state["not_ready"] = None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        load()
        log.info("retention serve: %s", state["not_ready"] or "champions loaded")
        yield

    app = FastAPI(title="retention-planner online decisions", lifespan=lifespan,
                  description="One customer's retention decision now, as the daily plan would make it.")
    app.add_middleware(BodyLimit, max_bytes=cfg.serve_max_body_bytes)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        if state["not_ready"]:
            load()  # champions trained after start-up are picked up here
        reason = state["not_ready"]
        if reason is None:
            try:
                client().get_table(cfg.table("online_budget"), retry=None, timeout=2)
            except UNAVAILABLE as err:
                reason = f"BigQuery unreachable at {cfg.bq_endpoint or 'bigquery.googleapis.com'}: {type(err).__name__}"
        if reason:
            return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.post("/retain", response_model=RetainResponse, responses={422: {"description": "facts at fault, by field"}})
    def retain_one(request: RetainRequest, response: Response) -> dict[str, Any]:
        if state["not_ready"]:
            raise HTTPException(503, state["not_ready"])
        timings: dict[str, float] = {}
        try:
            with decisions.timed(timings, "total"):
                out, name = _decide(cfg, client(), request, timings)
        except HTTPException:
            raise
        except UNAVAILABLE as err:
            log.warning("BigQuery unavailable: %s", type(err).__name__)
            raise HTTPException(503, "BigQuery unavailable, retry") from None
        except Exception as err:  # unforeseen: its message may quote the facts, so the log gets its type and place
            where = "".join(traceback.format_tb(err.__traceback__)[-3:])
            log.error("decision failed: %s\n%s", type(err).__name__, where)
            raise HTTPException(500, "internal error") from None
        response.headers["Server-Timing"] = ", ".join(f"{k};dur={1000 * v:.2f}" for k, v in timings.items())
        log.info("decision %s %s offer_level=%s in %.1f ms", out["decision_id"], out["decision"],
                 out["offer_level"], 1000 * timings["total"])
        return {
            "decision": {"contact": out["decision"] == "contact", "offer_level": out["offer_level"],
                         "offer_pct": out["offer_pct"], "followup_days": out["followup_days"],
                         "reason": out["decision_reason"], "propensity": out["propensity"]},
            "message": out["message"], "send_at": out["send_at"],
            "safety": {"violations": decisions.violations(out, name), "checks": out["shield_checks"] or {}},
            "model_versions": {**out["models"], "message": out["message_model"] or "none"},
        }

    return app


def _decide(cfg: Config, client: bigquery.Client, request: RetainRequest,
            timings: dict[str, float]) -> tuple[dict[str, Any], str]:
    """(the logged decision with its decision_id, the customer's name) for one request; HTTP errors for the rest."""
    ds = (request.ds or dt.datetime.now(dt.timezone.utc).date()).isoformat()
    given = request.customer_facts.model_dump(exclude_unset=True)
    source = "snapshot" if set(given) == {"customer_id"} else "request"
    try:
        if source == "snapshot":
            with decisions.timed(timings, "bq"):
                facts = retain.facts_for_customer(cfg, given["customer_id"], ds)
        else:
            facts = given
        out = decisions.decide(cfg, client, facts, ds, timings)
        row = decisions.log_row(out, facts, source, dt.datetime.now(dt.timezone.utc))
        with decisions.timed(timings, "bq"):
            decisions.log(client, cfg, row)
    except retain.FactsError as err:
        raise HTTPException(422, [{"loc": ["body", "customer_facts", field], "msg": f"{field} {problem}",
                                   "type": "value_error"} for field, problem in sorted(err.problems.items())])
    except LookupError:
        raise HTTPException(404, f"customer_id not in the customers snapshot of {ds}")
    return out | {"decision_id": row["decision_id"]}, str(facts.get("name", ""))


# body size


class BodyLimit:
    """Refuse a request body over `max_bytes` with 413, by its Content-Length or as it streams in (chunked)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.max_bytes:
            response = JSONResponse({"detail": f"request body over {self.max_bytes} bytes"}, status_code=413)
            return await response(scope, receive, send)
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:  # FastAPI answers an HTTPException raised while it reads the body
                raise HTTPException(413, f"request body over {self.max_bytes} bytes")
            return message

        await self.app(scope, limited, send)
