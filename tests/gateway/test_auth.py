"""Every route but /healthz needs the bearer token; refusals are logged."""

from __future__ import annotations

import logging

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect


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
    with pytest.raises(InvalidStatus), connect(f"{ws_url}?token=wrong", open_timeout=5):
        pass
    with connect(f"{ws_url}?token={gw.token}", open_timeout=5) as ws:
        ws.ping()


def test_dashboard_page_is_served_without_data(live_gateway) -> None:
    gw = live_gateway()
    response = httpx.get(f"{gw.url}/", trust_env=False)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "<title>HermitCrab</title>" in response.text
    assert gw.token not in response.text
