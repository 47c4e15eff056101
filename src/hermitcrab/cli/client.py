"""Talk to a running gateway over its HTTP and WebSocket API."""

from __future__ import annotations

from typing import Any

import httpx

from hermitcrab.config.loader import load_config
from hermitcrab.config.paths import Paths
from hermitcrab.config.tls import pinned
from hermitcrab.errors import GatewayError


class GatewayClient:
    def __init__(self, paths: Paths, timeout: float = 10.0) -> None:
        config = load_config(paths.config)
        self.paths = paths
        self.base_url = config.gateway.local_url
        self._token: str | None = None
        gateway = config.gateway
        self._ssl = pinned(gateway.tls_cert) if gateway.tls_cert else None
        verify: Any = self._ssl if self._ssl is not None else True
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, trust_env=False, verify=verify)

    @property
    def token(self) -> str:
        if self._token is None:
            try:
                self._token = self.paths.read_token()
            except FileNotFoundError:
                raise GatewayError(f"{self.paths.token} is missing. fix: run `hermitcrab onboard`") from None
        return self._token

    def close(self) -> None:
        self._http.close()

    def health(self) -> dict[str, Any] | None:
        """The health answer, or None when nothing answers."""
        try:
            response = self._http.get("/healthz", timeout=2.0)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            response = self._http.request(method, path, headers=headers, **kwargs)
        except httpx.ConnectError:
            raise GatewayError(
                f"the gateway at {self.base_url} is not running. fix: `hermitcrab up`"
            ) from None
        except httpx.HTTPError as exc:
            raise GatewayError(f"{method} {self.base_url}{path} failed: {exc}") from None
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:500]
            raise GatewayError(f"{method} {path}: HTTP {response.status_code}: {message}")
        return response.json()

    def post_message(self, session_id: str, text: str, agent: str | None, **options: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"text": text, "source": "cli", **options}
        if agent:
            body["agent"] = agent
        return self.request("POST", f"/api/sessions/{session_id}/messages", json=body)

    def events(self, session_id: str, after: int = 0) -> list[dict[str, Any]]:
        return self.request("GET", f"/api/sessions/{session_id}/events", params={"after": after})["events"]

    def websocket(self, session_id: str) -> Any:
        """A live event stream for one session (live events only, no replay)."""
        from websockets.sync.client import connect

        url = self.base_url.replace("http", "ws", 1) + f"/api/sessions/{session_id}/ws"
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            return connect(url, additional_headers=headers, open_timeout=5, ssl=self._ssl)
        except OSError:
            raise GatewayError(
                f"the gateway at {self.base_url} is not running. fix: `hermitcrab up`"
            ) from None
