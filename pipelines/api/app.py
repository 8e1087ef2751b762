"""The API service: read endpoints under ``/api/v1`` and plan decisions, behind bearer tokens.

Every route calls the same functions the assets and commands use (``assets.serving``,
``models.plan_store``). Authorisation: an operator token sees everything; a member token
sees the days and only that member's rows, statements and devices (403 otherwise); no or a
bad token gives 401. Errors are JSON ``{"detail": ...}``; no stack trace reaches a client.
The warehouse is read through short connections under its lock, so the pipeline's writers
wait at most for one query.
"""

import datetime as dt
import logging
from decimal import Decimal
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from assets.resources import EcmResource
from assets.serving import NotFound, days, setpoints_document, statement_file, subjects_of
from models.access import InvalidToken, Principal
from models.config import SAFE_ID
from models.contracts import TABLES
from models.plan_store import PlanDecisionError, approval_state, authenticate, record_decision
from models.triage import ACTIVE, STATUSES, TriageError, change, list_cases
from pipelines.api.portal import add_portal

log = logging.getLogger("ecm.api")
API = "/api/v1"
_bearer = HTTPBearer(auto_error=False)

DayParam = Annotated[dt.date, Path(description="local day YYYY-MM-DD")]
MemberParam = Annotated[str, Path(pattern=SAFE_ID, description="member id")]


class CaseChange(BaseModel):
    """A change of an anomaly case's status (``ecm triage``)."""

    action: Literal["ack", "confirm", "dismiss", "resolve", "reopen"]
    by: str = Field(min_length=1, max_length=200, description="who makes the change")
    note: str | None = Field(default=None, max_length=2000)
    suppress_days: int | None = Field(default=None, gt=0, le=366, description="dismiss only")
    owner: str | None = Field(default=None, max_length=200)


class Decision(BaseModel):
    """An operator's decision on the day's plan."""

    decision: Literal["approved", "rejected"]
    by: str = Field(min_length=1, max_length=200, description="who decides")
    comment: str | None = Field(default=None, max_length=2000)
    plan_version: str | None = Field(
        default=None, description="the version reviewed; refused (409) if the plan changed since"
    )


def _json_value(v: Any) -> Any:
    """One cell as JSON: times ISO 8601 (UTC), dates ISO, Decimals as exact text, NaN null."""
    if v is None or v is pd.NaT:
        return None
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and v != v:
        return None
    return v


DATE_COLUMNS = {c.name for t in TABLES.values() for c in t.columns if c.sql == "DATE"}
"""Columns stored as DATE: sent as ``YYYY-MM-DD`` (pandas reads them as midnight times)."""


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-safe dicts."""
    cols = list(df.columns)
    dates = [c in DATE_COLUMNS for c in cols]
    return [
        {
            c: (
                pd.Timestamp(v).date().isoformat()
                if d and v is not None and v == v
                else _json_value(v)
            )
            for c, v, d in zip(cols, row, dates, strict=True)
        }
        for row in df.itertuples(index=False, name=None)
    ]


def create_app(ecm: EcmResource | None = None) -> FastAPI:
    """The FastAPI application (``ecm serve`` runs it with uvicorn)."""
    ecm = ecm or EcmResource()
    app = FastAPI(
        title="ECM API",
        version="1",
        description="Plans, allocations, anomalies, statements and setpoints of an energy "
        "community. Send `Authorization: Bearer <token>` (`ecm token create`).",
    )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse({"detail": "internal error (logged on the server)"}, status_code=500)

    def principal(
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        if creds is None or creds.scheme.lower() != "bearer":
            raise HTTPException(401, "missing bearer token", {"WWW-Authenticate": "Bearer"})
        try:
            return authenticate(ecm.warehouse(), creds.credentials)
        except InvalidToken as err:
            raise HTTPException(401, str(err), {"WWW-Authenticate": "Bearer"}) from None

    Who = Annotated[Principal, Depends(principal)]

    def operator(who: Who) -> Principal:
        if who.role != "operator":
            raise HTTPException(403, "operators only")
        return who

    def known_day(day: dt.date) -> None:
        n = ecm.warehouse().query("SELECT count(*) AS n FROM dispatch_plan WHERE day = ?", [day])
        if int(n["n"].iloc[0]) == 0:
            raise HTTPException(404, f"no plan is stored for {day}")

    def own(who: Principal, df: pd.DataFrame, col: str = "member_id") -> pd.DataFrame:
        return df if who.role == "operator" else df[df[col].astype(str) == who.member_id]

    @app.get(f"{API}/days")
    def list_days(who: Who) -> list[dict[str, Any]]:
        """Planned days with plan kind, approval state and settlement version."""
        return _records(days(ecm))

    @app.get(f"{API}/days/{{day}}/plan")
    def plan(
        day: DayParam, who: Who, scenario: str | None = None, member_id: str | None = None
    ) -> dict[str, Any]:
        """The day's plan rows (a member sees their own), with version and approval."""
        known_day(day)
        wh = ecm.warehouse()
        df = wh.read_day("dispatch_plan", day)
        state = approval_state(wh, day, df)
        df = own(who, df)
        if scenario is not None:
            df = df[df["scenario"] == scenario]
        if member_id is not None:
            df = df[df["member_id"] == member_id]
        return {"day": str(day), "approval": state, "rows": _records(df)}

    @app.get(f"{API}/days/{{day}}/approval")
    def approval(day: DayParam, who: Who) -> dict[str, Any]:
        """The plan's version and approval state."""
        known_day(day)
        return approval_state(ecm.warehouse(), day)

    @app.post(f"{API}/days/{{day}}/approval")
    def decide(day: DayParam, body: Decision, who: Annotated[Principal, Depends(operator)]):
        """Approve or reject the day's plan (recorded in the audit ledger)."""
        known_day(day)
        try:
            record_decision(
                ecm.warehouse(),
                day,
                body.decision,
                by=body.by,
                comment=body.comment,
                source="api",
                expected_version=body.plan_version,
            )
        except PlanDecisionError as err:
            raise HTTPException(409, str(err)) from None
        return approval_state(ecm.warehouse(), day)

    @app.get(f"{API}/days/{{day}}/allocations")
    def allocations(day: DayParam, who: Who) -> dict[str, Any]:
        """The settled allocations of the day (a member sees their own)."""
        known_day(day)
        from models.settlement_store import latest_version, settled_allocations

        wh = ecm.warehouse()
        version = latest_version(wh, day)
        df = own(who, settled_allocations(wh, day))
        return {
            "day": str(day),
            "settlement_version": None if version is None else int(version["version"]),
            "rows": _records(df),
        }

    @app.get(f"{API}/days/{{day}}/anomalies")
    def anomalies(day: DayParam, who: Who) -> dict[str, Any]:
        """The day's anomaly flags (a member sees flags on themselves and their meters)."""
        known_day(day)
        wh = ecm.warehouse()
        df = wh.read_day("anomalies", day)
        if who.role != "operator":
            df = df[df["subject_id"].astype(str).isin(subjects_of(wh, str(who.member_id)))]
        return {"day": str(day), "rows": _records(df)}

    @app.get(f"{API}/days/{{day}}/realised")
    def realised(day: DayParam, who: Who, controller: str | None = None) -> dict[str, Any]:
        """The metered day replayed under every controller: flows per member and interval
        (a member sees their own) and the community's evaluation per controller."""
        known_day(day)
        wh = ecm.warehouse()
        flows = own(who, wh.read_day("realised_flows", day))
        if controller is not None:
            flows = flows[flows["controller"] == controller]
        return {
            "day": str(day),
            "evaluation": _records(wh.read_day("evaluation", day)),
            "flows": _records(flows),
        }

    @app.get(f"{API}/days/{{day}}/forecasts")
    def forecasts(day: DayParam, who: Who, champion_only: bool = True) -> dict[str, Any]:
        """The day's forecasts (champion by default; a member sees their own series)."""
        known_day(day)
        df = ecm.warehouse().read_day("forecasts", day)
        if champion_only:
            df = df[df["is_champion"]]
        return {"day": str(day), "rows": _records(own(who, df, "unique_id"))}

    @app.get(f"{API}/days/{{day}}/report", response_class=HTMLResponse)
    def report(day: DayParam, who: Annotated[Principal, Depends(operator)]) -> HTMLResponse:
        """The operator's plan report of the day (HTML; its figures load plotly.js from the
        reports folder, so open the file itself for the charts)."""
        path = ecm.reports_dir() / f"{day}" / "plan.html"
        if not path.is_file():
            raise HTTPException(404, f"no report for {day}")
        return HTMLResponse(path.read_text(encoding="utf-8"))

    @app.get(f"{API}/days/{{day}}/setpoints")
    def setpoints(day: DayParam, who: Who) -> dict[str, Any]:
        """Setpoints per device (schema ``ecm.setpoints/v1``); a member gets their devices."""
        try:
            doc = setpoints_document(ecm, day)
        except NotFound as err:
            raise HTTPException(404, str(err)) from None
        if who.role != "operator":
            doc["devices"] = [d for d in doc["devices"] if d["member_id"] == who.member_id]
        return doc

    @app.get(f"{API}/cases")
    def cases(who: Who, status: Annotated[list[str] | None, Query()] = None) -> dict[str, Any]:
        """Anomaly cases (active by default; ``?status=dismissed`` and so on). A member sees
        the cases on themselves and their metering points."""
        bad = [x for x in status or [] if x not in STATUSES]
        if bad:
            raise HTTPException(422, f"unknown status {bad}; one of {list(STATUSES)}")
        wh = ecm.warehouse()
        df = list_cases(wh, tuple(status or ACTIVE))
        if who.role != "operator" and len(df):
            df = df[df["subject_id"].astype(str).isin(subjects_of(wh, str(who.member_id)))]
        return {"cases": _records(df)}

    @app.post(f"{API}/cases/{{case_id}}")
    def change_case(
        case_id: Annotated[str, Path(pattern=r"^[0-9a-f]{12}$")],
        body: CaseChange,
        who: Annotated[Principal, Depends(operator)],
    ) -> dict[str, Any]:
        """Change a case's status (recorded in ``anomaly_case_events``); operators only."""
        try:
            ev = change(
                ecm.warehouse(),
                case_id,
                body.action,
                by=body.by,
                note=body.note,
                suppress_days=body.suppress_days,
                owner=body.owner,
            )
        except TriageError as err:
            code = 404 if str(err).startswith("no case") else 409
            raise HTTPException(code, str(err)) from None
        return {k: _json_value(v) for k, v in ev.items()}

    @app.get(f"{API}/members/{{member_id}}/statements/{{day}}", response_class=HTMLResponse)
    def statement(member_id: MemberParam, day: DayParam, who: Who) -> HTMLResponse:
        """The member's statement of the day (HTML)."""
        if not who.may_see(member_id):
            raise HTTPException(403, "a member token sees only its own member's data")
        try:
            path = statement_file(ecm, member_id, day)
        except NotFound as err:
            raise HTTPException(404, str(err)) from None
        return HTMLResponse(path.read_text(encoding="utf-8"))

    add_portal(app, ecm)
    return app
