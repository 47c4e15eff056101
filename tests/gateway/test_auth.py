"""Every route but /healthz and the dashboard's files needs the bearer token or the dashboard's
session cookie; a Host the gateway is not, and a cross-site page, are refused; refusals are logged."""

from __future__ import annotations

import logging
import re
import time

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from hermitcrab.gateway.auth import COOKIE, SESSION_SECONDS, cookie_valid, session_cookie


def test_health_is_open(live_gateway) -> None:
    gw = live_gateway()
    response = httpx.get(f"{gw.url}/healthz", trust_env=False)
    assert response.status_code == 200 and response.json()["ok"] is True


@pytest.mark.parametrize("path", ["/api/sessions", "/api/status", "/v1/models", "/api/sessions/x/events"])
def test_missing_token_is_401(live_gateway, path: str) -> None:
    gw = live_gateway()
    response = httpx.get(f"{gw.url}{path}", trust_env=False)
    assert response.status_code == 401
    assert "bearer token" in response.json()["error"]["message"]


def test_wrong_token_is_401_and_logged(live_gateway, caplog: pytest.LogCaptureFixture) -> None:
    gw = live_gateway()
    with caplog.at_level(logging.WARNING, logger="hermitcrab.auth"):
        response = httpx.post(
            f"{gw.url}/api/sessions/s/messages",
            json={"text": "hi"},
            headers={"Authorization": "Bearer not-the-token"},
            trust_env=False,
        )
    assert response.status_code == 401
    assert any(
        "unauthorized" in r.getMessage() and r.path == "/api/sessions/s/messages" for r in caplog.records
    )
    assert gw.events("s") == []  # nothing was stored


def test_right_token_passes(live_gateway) -> None:
    gw = live_gateway()
    with gw.client() as client:
        assert client.get("/api/sessions").status_code == 200


def test_websocket_needs_the_token(live_gateway) -> None:
    gw = live_gateway()
    ws_url = gw.url.replace("http", "ws") + "/api/sessions/s/ws"
    with pytest.raises(InvalidStatus) as caught, connect(ws_url, open_timeout=5):
        pass
    assert caught.value.response.status_code == 403  # closed before accept: the handshake fails
    with pytest.raises(InvalidStatus), connect(ws_url, additional_headers={"Authorization": "Bearer wrong"}):
        pass
    with connect(ws_url, additional_headers=gw.headers, open_timeout=5) as ws:
        ws.ping()
    # The token never travels in a URL: one there authenticates nothing.
    with pytest.raises(InvalidStatus), connect(f"{ws_url}?token={gw.token}", open_timeout=5):
        pass


def test_dashboard_page_is_served_without_data(live_gateway) -> None:
    gw = live_gateway()
    response = httpx.get(f"{gw.url}/", trust_env=False)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "<title>HermitCrab</title>" in response.text
    assert gw.token not in response.text


def login(gw, token: str | None = None) -> httpx.Response:
    return httpx.post(f"{gw.url}/api/login", json={"token": token or gw.token}, trust_env=False)


def test_the_dashboard_trades_the_token_for_an_httponly_strict_cookie(live_gateway) -> None:
    gw = live_gateway()
    assert login(gw, "not-the-token").status_code == 401
    signed = login(gw)
    assert signed.status_code == 204
    set_cookie = signed.headers["set-cookie"]
    assert set_cookie.startswith(f"{COOKIE}=") and gw.token not in set_cookie
    assert "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie and "Path=/" in set_cookie
    cookies = {COOKIE: signed.cookies[COOKIE]}
    own = {"Origin": gw.url}
    with httpx.Client(base_url=gw.url, cookies=cookies, trust_env=False) as browser:
        assert browser.get("/api/sessions").status_code == 200  # reading needs no Origin
        sent = browser.post("/api/sessions/c/messages", json={"text": "hi"}, headers=own)
        assert sent.status_code == 202, sent.text
        # A change the cookie carries from another site's page, or from nowhere said, is refused.
        for headers in ({"Origin": "https://evil.example"}, {}):
            refused = browser.post("/api/sessions/c/messages", json={"text": "x"}, headers=headers)
            assert refused.status_code == 403 and refused.json()["error"]["type"] == "cross_origin"
    assert [e["data"]["text"] for e in gw.events("c") if e["kind"] == "message"] == ["hi"]

    ws_url = gw.url.replace("http", "ws") + "/api/sessions/c/ws"
    cookie = {"Cookie": f"{COOKIE}={cookies[COOKIE]}"}
    with connect(ws_url, additional_headers={**cookie, **own}, open_timeout=5) as ws:
        ws.ping()
    for origin in ("https://evil.example", "http://127.0.0.1:1"):
        with pytest.raises(InvalidStatus), connect(ws_url, additional_headers={**cookie, "Origin": origin}):
            pass
    # Not even the token opens a WebSocket for another site's page.
    with (
        pytest.raises(InvalidStatus),
        connect(ws_url, additional_headers={**gw.headers, "Origin": "https://evil.example"}),
    ):
        pass


def test_a_forged_or_old_cookie_is_refused(live_gateway) -> None:
    gw = live_gateway()
    month_ago = time.time() - SESSION_SECONDS - 60
    other = session_cookie(b"another gateway's token")
    for value in (session_cookie(gw.token.encode(), month_ago), other, "1.2", "garbage", ""):
        response = httpx.get(f"{gw.url}/api/sessions", cookies={COOKIE: value}, trust_env=False)
        assert response.status_code == 401, value
    assert cookie_valid(gw.token.encode(), session_cookie(gw.token.encode()))


def test_a_host_the_gateway_is_not_is_refused(live_gateway, home) -> None:
    home.config.write_text(
        home.config.read_text().replace("gateway:\n", "gateway:\n  allowed_hosts: [crab.tail0.ts.net]\n")
    )
    gw = live_gateway()
    for path in ("/", "/healthz", "/api/sessions"):  # DNS rebinding: another name pointed at us
        response = httpx.get(
            f"{gw.url}{path}", headers={**gw.headers, "Host": "evil.example"}, trust_env=False
        )
        assert response.status_code == 421 and response.json()["error"]["type"] == "unknown_host"
    named = httpx.get(f"{gw.url}/healthz", headers={"Host": "crab.tail0.ts.net:80"}, trust_env=False)
    assert named.status_code == 200
    assert (
        httpx.get(f"{gw.url.replace('127.0.0.1', 'localhost')}/healthz", trust_env=False).status_code == 200
    )


def test_the_page_runs_only_its_own_files_under_a_strict_policy(live_gateway) -> None:
    gw = live_gateway()
    page = httpx.get(f"{gw.url}/", trust_env=False)
    policy = page.headers["content-security-policy"]
    assert (
        "default-src 'none'" in policy
        and "script-src 'self'" in policy
        and "frame-ancestors 'none'" in policy
    )
    assert "unsafe-inline" not in policy and page.headers["x-content-type-options"] == "nosniff"
    html = page.text
    # Nothing inline for the policy to refuse: every script and style is a file of its own.
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == [] and "<style" not in html
    assert re.findall(r"\s(?:on[a-z]+|style)=", html) == []
    for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
        served = httpx.get(f"{gw.url}/static/{name}", trust_env=False)
        assert served.status_code == 200 and served.headers["content-type"].startswith(kind)
        assert gw.token not in served.text
    for name in ("index.html", "..%2Fauth.py", "nope.js"):
        assert httpx.get(f"{gw.url}/static/{name}", trust_env=False).status_code == 404
    api = httpx.get(f"{gw.url}/api/sessions", headers=gw.headers, trust_env=False)
    assert api.headers["content-security-policy"] == policy  # every response carries it
