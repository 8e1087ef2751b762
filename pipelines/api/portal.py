"""The member portal: server-rendered pages (Jinja) on the API service.

A member signs in with their token (``/portal/login``); it is kept in an HttpOnly,
SameSite=Strict cookie (Secure over HTTPS) until they sign out. The member sees their days,
shared energy and amounts per day and month, downloads their statements and reads the flags
on their own meters; another member's page is refused (403). An operator sees every member.
"""

import datetime as dt
from pathlib import Path as FilePath
from typing import Annotated

import jinja2
from fastapi import FastAPI, Form, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from assets.resources import EcmResource
from assets.serving import (
    NotFound,
    member_anomalies,
    member_days,
    member_months,
    member_name,
    statement_file,
)
from models.access import InvalidToken, Principal
from models.config import SAFE_ID
from models.plan_store import authenticate

COOKIE = "ecm_token"
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(FilePath(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
MemberParam = Annotated[str, Path(pattern=SAFE_ID, description="member id")]


def add_portal(app: FastAPI, ecm: EcmResource) -> None:
    """Add the ``/portal`` pages to ``app``."""
    cfg = ecm.community()
    community = cfg.community.name

    def page(template: str, status: int = 200, **context) -> HTMLResponse:
        html = _ENV.get_template(template).render(community=community, **context)
        return HTMLResponse(html, status_code=status)

    def signed_in(request: Request) -> Principal | None:
        token = request.cookies.get(COOKIE)
        if not token:
            return None
        try:
            return authenticate(ecm.warehouse(), token)
        except InvalidToken:
            return None

    @app.get("/portal/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form() -> HTMLResponse:
        return page("login.html.j2", who=None, error=None)

    @app.post("/portal/login", include_in_schema=False)
    def login(request: Request, token: Annotated[str, Form()]) -> Response:
        try:
            who = authenticate(ecm.warehouse(), token)
        except InvalidToken as err:
            return page("login.html.j2", 401, who=None, error=f"Sign-in refused: {err}.")
        target = "/portal" if who.role == "operator" else f"/portal/members/{who.member_id}"
        resp = RedirectResponse(target, status_code=303)
        resp.set_cookie(
            COOKIE,
            token.strip(),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/portal",
        )
        return resp

    @app.post("/portal/logout", include_in_schema=False)
    def logout() -> Response:
        resp = RedirectResponse("/portal/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/portal")
        return resp

    @app.get("/portal", include_in_schema=False)
    def home(request: Request) -> Response:
        who = signed_in(request)
        if who is None:
            return RedirectResponse("/portal/login", status_code=303)
        if who.role != "operator":
            return RedirectResponse(f"/portal/members/{who.member_id}", status_code=303)
        members = ecm.warehouse().query("SELECT member_id, name FROM members ORDER BY member_id")
        return page("operator.html.j2", who=who, members=members.to_dict("records"))

    @app.get("/portal/members/{member_id}", include_in_schema=False)
    def member(request: Request, member_id: MemberParam) -> Response:
        who = signed_in(request)
        if who is None:
            return RedirectResponse("/portal/login", status_code=303)
        if not who.may_see(member_id):
            return page("login.html.j2", 403, who=who, error="This page belongs to another member.")
        name = member_name(ecm, member_id)
        if name is None:
            raise HTTPException(404, f"no member {member_id}")
        days = member_days(ecm, member_id)
        return page(
            "member.html.j2",
            who=who,
            member_id=member_id,
            name=name,
            rule=cfg.fairness.settlement_rule,
            currency=cfg.community.currency,
            days=days.to_dict("records"),
            months=member_months(days).to_dict("records"),
            anomalies=member_anomalies(ecm, member_id).to_dict("records"),
        )

    @app.get("/portal/members/{member_id}/statements/{day}", include_in_schema=False)
    def statement(request: Request, member_id: MemberParam, day: dt.date) -> Response:
        who = signed_in(request)
        if who is None:
            return RedirectResponse("/portal/login", status_code=303)
        if not who.may_see(member_id):
            raise HTTPException(403, "a member sees only their own statements")
        try:
            path = statement_file(ecm, member_id, day)
        except NotFound as err:
            raise HTTPException(404, str(err)) from None
        return HTMLResponse(
            path.read_text(encoding="utf-8"),
            headers={
                "Content-Disposition": f'attachment; filename="statement-{member_id}-{day}.html"'
            },
        )
