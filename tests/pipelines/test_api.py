"""The API service, tokens, plan decisions and the setpoints export on one materialised demo
day (issue #10): 401 without a token, 403 for another member's data, approval in the report,
the export valid against its documented schema."""

from __future__ import annotations

import datetime as dt
import json

import jsonschema
import pytest
from fastapi.testclient import TestClient
from materialised import materialised_home
from typer.testing import CliRunner

from assets.resources import EcmResource
from models.warehouse import Warehouse
from optimisation.setpoints import schema
from pipelines.api.app import create_app
from pipelines.cli import app

DAY = dt.date(2017, 6, 14)
runner = CliRunner()


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with materialised_home(tmp_path_factory.mktemp("ecm_api_home"), DAY) as path:
        yield path


def _token(*args: str) -> str:
    r = runner.invoke(app, ["token", "create", *args])
    assert r.exit_code == 0, r.output
    return r.output.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def tokens(home):
    return {
        "operator": _token("--role", "operator", "--label", "ops"),
        "M07": _token("--role", "member", "--member", "M07"),
    }


@pytest.fixture(scope="module")
def client(home):
    return TestClient(create_app(EcmResource()))


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_no_malformed_unknown_or_revoked_token_gives_401_json(client, tokens, home):
    url = f"/api/v1/days/{DAY}/plan"
    for headers in ({}, _h("nonsense"), _h("ecm_000000000000_" + "A" * 43)):
        r = client.get(url, headers=headers)
        assert r.status_code == 401, headers
        assert "detail" in r.json() and "Traceback" not in r.text
    doomed = _token("--role", "member", "--member", "M08")
    assert client.get(url, headers=_h(doomed)).status_code == 200
    assert runner.invoke(app, ["token", "revoke", doomed.split("_")[1]]).exit_code == 0
    r = client.get(url, headers=_h(doomed))
    assert r.status_code == 401 and r.json()["detail"] == "revoked token"
    # a token past its expiry is refused
    short = _token("--role", "operator", "--expires-days", "0.00001")
    import time

    time.sleep(1.2)
    r = client.get(url, headers=_h(short))
    assert r.status_code == 401 and r.json()["detail"] == "expired token"


def test_only_hashes_of_tokens_are_stored(home, tokens):
    stored = Warehouse(home / "warehouse.duckdb").read("api_tokens")
    text = stored.to_csv()
    for tok in tokens.values():
        assert tok.split("_")[2] not in text
        assert tok.split("_")[1] in set(stored["token_id"])


def test_operator_reads_plan_allocations_and_anomalies(client, tokens):
    h = _h(tokens["operator"])
    plan = client.get(f"/api/v1/days/{DAY}/plan", headers=h)
    assert plan.status_code == 200
    body = plan.json()
    assert len({r["member_id"] for r in body["rows"]}) == 18  # 17 homes and the community
    assert body["approval"]["state"] in ("proposed", "approved", "rejected")
    assert {r["day"] for r in body["rows"]} == {str(DAY)}  # a DATE is a date, not a time
    alloc = client.get(f"/api/v1/days/{DAY}/allocations", headers=h)
    assert alloc.status_code == 200 and alloc.json()["settlement_version"] >= 1
    assert len({r["member_id"] for r in alloc.json()["rows"]}) > 1
    assert client.get(f"/api/v1/days/{DAY}/anomalies", headers=h).status_code == 200
    days = client.get("/api/v1/days", headers=h).json()
    assert [d["day"] for d in days] == [str(DAY)]


def test_a_member_sees_its_own_statement_and_rows_and_is_refused_another(client, tokens):
    h = _h(tokens["M07"])
    mine = client.get(f"/api/v1/members/M07/statements/{DAY}", headers=h)
    assert mine.status_code == 200 and "M07" in mine.text
    other = client.get(f"/api/v1/members/M08/statements/{DAY}", headers=h)
    assert other.status_code == 403
    rows = client.get(f"/api/v1/days/{DAY}/allocations", headers=h).json()["rows"]
    assert rows and {r["member_id"] for r in rows} == {"M07"}
    plan = client.get(f"/api/v1/days/{DAY}/plan", headers=h).json()["rows"]
    assert {r["member_id"] for r in plan} == {"M07"}
    sp = client.get(f"/api/v1/days/{DAY}/setpoints", headers=h).json()
    assert {d["member_id"] for d in sp["devices"]} <= {"M07"}
    assert client.get(f"/api/v1/members/M08/statements/{DAY}", headers=_h(tokens["operator"]))


def test_bad_paths_get_4xx_json(client, tokens):
    h = _h(tokens["operator"])
    assert client.get("/api/v1/days/2017-13-01/plan", headers=h).status_code == 422
    assert client.get("/api/v1/days/not-a-day/plan", headers=h).status_code == 422
    missing = client.get("/api/v1/days/2017-06-20/plan", headers=h)
    assert missing.status_code == 404 and "2017-06-20" in missing.json()["detail"]
    evil = client.get(f"/api/v1/members/..%2Fevil/statements/{DAY}", headers=h)
    assert evil.status_code in (404, 422)
    assert "Traceback" not in evil.text


def test_export_is_valid_against_its_schema_and_proposed_until_approved(home):
    r = runner.invoke(app, ["export", "plan", "--date", str(DAY), "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    jsonschema.validate(doc, schema())
    assert doc["approval"]["state"] == "proposed"
    assert len(doc["devices"]) >= 1
    n = len(doc["devices"][0]["intervals"])
    assert n == 24
    csv = runner.invoke(app, ["export", "plan", "--date", str(DAY), "--format", "csv"]).output
    lines = csv.strip().splitlines()
    assert len(lines) == 1 + n * len(doc["devices"])
    assert lines[0].startswith("device_id,member_id,kind,start,end,charge_kw")


def test_export_matches_the_plan_in_kw_and_deviations_are_consistent(home):
    doc = json.loads(runner.invoke(app, ["export", "plan", "--date", str(DAY)]).output)
    plan = Warehouse(home / "warehouse.duckdb").read_day("dispatch_plan", DAY)
    exp = plan[plan["scenario"] == "expected"]
    for d in doc["devices"]:
        rows = exp[exp["member_id"] == d["member_id"]].sort_values("ts")
        charge = [iv["charge_kw"] for iv in d["intervals"]]  # hourly: kW = kWh
        assert charge == pytest.approx(rows["charge_kwh"].round(4).tolist(), abs=1e-4)
        for iv in d["intervals"]:
            # a deviation never exceeds the planned move it comes from
            assert iv["extra_charge_kw"] <= iv["charge_kw"] + 1e-6
            assert iv["extra_discharge_kw"] <= iv["discharge_kw"] + 1e-6
            assert 0 <= iv["target_soc_kwh"] <= d["capacity_kwh"] + 1e-6


def test_approval_is_recorded_shown_in_the_report_and_exported(home, client, tokens):
    r = runner.invoke(
        app, ["plan", "approve", "--date", str(DAY), "--by", "Ops Lead", "--comment", "ok"]
    )
    assert r.exit_code == 0, r.output
    report = (home / "reports" / str(DAY) / "plan.html").read_text()
    assert 'id="plan-approval"' in report and "approved" in report and "Ops Lead" in report
    doc = json.loads(runner.invoke(app, ["export", "plan", "--date", str(DAY)]).output)
    assert doc["approval"]["state"] == "approved"
    assert doc["approval"]["decided_by"] == "Ops Lead"
    # a member may not decide; a decision on a version that is not the stored one is refused
    body = {"decision": "rejected", "by": "M07"}
    url = f"/api/v1/days/{DAY}/approval"
    assert client.post(url, json=body, headers=_h(tokens["M07"])).status_code == 403
    stale = {**body, "by": "ops", "plan_version": "0" * 16}
    assert client.post(url, json=stale, headers=_h(tokens["operator"])).status_code == 409
    ok = {**body, "by": "ops", "plan_version": doc["plan_version"], "comment": "too risky"}
    r = client.post(url, json=ok, headers=_h(tokens["operator"]))
    assert r.status_code == 200 and r.json()["state"] == "rejected"
    # every decision is in the audit ledger, and the chain verifies
    v = runner.invoke(app, ["audit", "verify"])
    assert v.exit_code == 0, v.output
    ledger = Warehouse(home / "warehouse.duckdb").read("audit_ledger")
    assert (ledger["kind"] == "plan_decision").sum() == 2


def test_a_changed_plan_is_proposed_again(home):
    from models.plan_store import approval_state, plan_version

    wh = Warehouse(home / "warehouse.duckdb")
    plan = wh.read_day("dispatch_plan", DAY)
    changed = plan.copy()
    changed.loc[changed.index[0], "charge_kwh"] += 0.5
    assert plan_version(changed) != plan_version(plan)
    assert approval_state(wh, DAY, changed)["state"] == "proposed"
    # solver noise is not a new version (nor is -0.0 against 0.0)
    noisy = plan.assign(charge_kwh=plan["charge_kwh"] + 1e-9, soc_kwh=plan["soc_kwh"] - 1e-9)
    assert plan_version(noisy) == plan_version(plan)


def test_realised_forecasts_and_report(client, tokens):
    op, m7 = _h(tokens["operator"]), _h(tokens["M07"])
    r = client.get(f"/api/v1/days/{DAY}/realised?controller=ecm", headers=op).json()
    assert {e["controller"] for e in r["evaluation"]} >= {"ecm", "self_consumption"}
    assert {f["controller"] for f in r["flows"]} == {"ecm"}
    mine = client.get(f"/api/v1/days/{DAY}/realised", headers=m7).json()["flows"]
    assert mine and {f["member_id"] for f in mine} == {"M07"}
    fc = client.get(f"/api/v1/days/{DAY}/forecasts", headers=m7).json()["rows"]
    assert fc and {f["unique_id"] for f in fc} == {"M07"} and all(f["is_champion"] for f in fc)
    assert client.get(f"/api/v1/days/{DAY}/report", headers=m7).status_code == 403
    rep = client.get(f"/api/v1/days/{DAY}/report", headers=op)
    assert rep.status_code == 200 and "dispatch plan" in rep.text


def test_portal_signs_a_member_in_and_shows_only_their_pages(home, tokens):
    c = TestClient(create_app(EcmResource()))
    assert c.get("/portal", follow_redirects=False).headers["location"] == "/portal/login"
    bad = c.post("/portal/login", data={"token": "nonsense"})
    assert bad.status_code == 401 and "Sign-in refused" in bad.text
    r = c.post("/portal/login", data={"token": tokens["M07"]}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/portal/members/M07"
    assert "httponly" in r.headers["set-cookie"].lower()
    page = c.get("/portal/members/M07")
    assert page.status_code == 200 and 'id="member-heading"' in page.text
    assert str(DAY) in page.text and "download" in page.text
    st = c.get(f"/portal/members/M07/statements/{DAY}")
    assert st.status_code == 200 and "attachment" in st.headers["content-disposition"]
    assert c.get("/portal/members/M08").status_code == 403
    assert c.get(f"/portal/members/M08/statements/{DAY}").status_code == 403
    c.post("/portal/logout")
    assert c.get("/portal/members/M07", follow_redirects=False).status_code == 303


@pytest.fixture(scope="module")
def server(home):
    """``ecm serve``'s app on a free localhost port, in a thread."""
    import socket
    import threading

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(
        uvicorn.Config(create_app(EcmResource()), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        threading.Event().wait(0.05)
    assert srv.started
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def test_portal_in_a_real_browser(server, tokens):
    """Headless Chromium (Debian's chromium and chromium-driver, installed by `make test`)
    signs in with M07's token, sees M07's days and amounts, downloads nothing from M08 and is
    refused M08's page."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver_path = shutil.which("chromedriver")
    assert driver_path, "chromium-driver is missing: run `make test` (it installs it)"
    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(arg)
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    browser = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        browser.get(f"{server}/portal")
        assert browser.current_url.endswith("/portal/login")
        browser.find_element(By.ID, "token").send_keys(tokens["M07"])
        browser.find_element(By.ID, "sign-in").click()
        WebDriverWait(browser, 20).until(
            lambda b: (
                b.current_url.endswith("/portal/members/M07")
                or b.find_elements(By.ID, "login-error")
            )
        )
        assert browser.current_url.endswith("/portal/members/M07"), browser.page_source[:2000]
        assert "(M07)" in browser.find_element(By.ID, "member-heading").text
        days = browser.find_element(By.ID, "days").text
        assert str(DAY) in days
        link = browser.find_element(By.LINK_TEXT, "download")
        assert link.get_attribute("href").endswith(f"/portal/members/M07/statements/{DAY}")
        browser.get(f"{server}/portal/members/M08")
        assert "belongs to another member" in browser.find_element(By.TAG_NAME, "body").text
        assert "M08" not in browser.find_element(By.TAG_NAME, "body").text
        browser.find_element(By.ID, "logout").click()
        WebDriverWait(browser, 20).until(lambda b: b.current_url.endswith("/portal/login"))
        browser.get(f"{server}/portal/members/M07")
        assert browser.current_url.endswith("/portal/login")
    finally:
        browser.quit()


def test_materialisations_link_to_the_report_and_the_mlflow_run(home):
    import dagster as dg

    instance = dg.DagsterInstance.get()

    def latest(key: str) -> dict:
        ev = instance.get_latest_materialization_event(dg.AssetKey(key))
        assert ev is not None, key
        return ev.asset_materialization.metadata

    link = latest("reports")["plan_report_link"]
    assert isinstance(link, dg.UrlMetadataValue) and link.url.endswith(f"{DAY}/plan.html")
    mlflow_link = latest("forecasts")["load_mlflow_run_link"]
    assert "/#/experiments/" in mlflow_link.url and "/runs/" in mlflow_link.url


def test_anomaly_cases_through_the_api(client, tokens, home):
    op = _h(tokens["operator"])
    listed = client.get("/api/v1/cases", headers=op)
    assert listed.status_code == 200
    cases = listed.json()["cases"]
    assert cases and all(c["status"] == "open" for c in cases)
    assert client.get("/api/v1/cases?status=nope", headers=op).status_code == 422
    cid = cases[0]["case_id"]
    url = f"/api/v1/cases/{cid}"
    body = {"action": "ack", "by": "Ops Lead", "note": "looking"}
    assert client.post(url, json=body, headers=_h(tokens["M07"])).status_code == 403
    r = client.post(url, json=body, headers=op)
    assert r.status_code == 200 and r.json()["to_status"] == "acknowledged"
    assert client.post(url, json=body, headers=op).status_code == 409  # already acknowledged
    assert client.post("/api/v1/cases/000000000000", json=body, headers=op).status_code == 404
    again = client.get("/api/v1/cases?status=acknowledged", headers=op).json()["cases"]
    assert [c["case_id"] for c in again] == [cid] and again[0]["owner"] == "Ops Lead"
    mine = client.get("/api/v1/cases", headers=_h(tokens["M07"])).json()["cases"]
    assert all(c["subject_id"] in ("M07", "MP-07-C", "MP-07-P") for c in mine)
