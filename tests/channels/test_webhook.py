"""Signed webhooks: a message posted with an HMAC-SHA256 signature over its timestamp and
body becomes a (tainted) turn; a bad signature, a stale timestamp or a replay is refused;
the answer is posted back, signed the same way."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hermitcrab.channels.webhook import REPLAY_WINDOW_S, sign, verify
from hermitcrab.config.paths import Paths
from hermitcrab.egress.secrets import Secret, SecretStore
from tests.cli.conftest import hc
from tests.conftest import SCRIPTED_CONFIG, free_port, wait_for

KEY = "webhook-signing-key-0123456789"


class Receiver:
    """Where answers are posted: a real HTTP server on loopback, checking each signature."""

    def __init__(self) -> None:
        self.port = free_port()
        self.got: list[dict] = []

        async def take(request: Request) -> Response:
            body = await request.body()
            stamp = request.headers["x-hermitcrab-timestamp"]
            ok = verify(KEY, stamp, body, request.headers["x-hermitcrab-signature"], time.time(), set())
            self.got.append({"valid": ok is None, **json.loads(body)})
            return Response(status_code=204)

        self.server = uvicorn.Server(
            uvicorn.Config(
                Starlette(routes=[Route("/replies", take, methods=["POST"])]), port=self.port, log_config=None
            )
        )
        threading.Thread(target=self.server.run, daemon=True).start()
        while not self.server.started:
            time.sleep(0.01)


@pytest.fixture
def hooked(home: Paths) -> Iterator[tuple[Paths, Receiver, str]]:
    receiver = Receiver()
    port = free_port()
    home.config.write_text(
        SCRIPTED_CONFIG.format(port=port, replies='["Noted."]')
        + f"\nchannels:\n  hooks:\n    type: webhook\n    secret: hooks\n"
        f"    reply_url: http://127.0.0.1:{receiver.port}/replies\n"
    )
    SecretStore(home.secrets).set(Secret("hooks", KEY))
    assert hc(home, "up").returncode == 0
    yield home, receiver, f"http://127.0.0.1:{port}/hooks/hooks"
    hc(home, "down")
    receiver.server.should_exit = True


def post(url: str, payload: dict, key: str = KEY, stamp: float | None = None, signature: str | None = None):
    body = json.dumps(payload).encode()
    stamp_text = str(int(stamp if stamp is not None else time.time()))
    headers = {
        "content-type": "application/json",
        "x-hermitcrab-timestamp": stamp_text,
        "x-hermitcrab-signature": signature or sign(key, stamp_text, body),
    }
    return httpx.post(url, content=body, headers=headers, trust_env=False), headers, body


def test_a_signed_message_is_a_tainted_turn_and_its_answer_comes_back_signed(hooked) -> None:
    home, receiver, url = hooked
    sent, headers, body = post(url, {"text": "The build failed.", "sender": "ci", "id": "run-41"})
    assert sent.status_code == 202, sent.text
    answered = wait_for(lambda: receiver.got, what="the signed answer")
    assert answered == [{"valid": True, "chat": "ci", "text": "Noted.", "in_reply_to": "run-41"}]
    from hermitcrab.cli.client import GatewayClient

    (message,) = [e for e in GatewayClient(home).events("hooks-ci") if e["kind"] == "message"]
    assert message["data"]["sender"] == "hooks:ci" and message["data"]["approvals"] == "deny"  # tainted

    # The same request again (a replay), or the same id re-signed (a retry): taken once.
    again = httpx.post(url, content=body, headers=headers, trust_env=False)
    assert again.status_code == 409 and "replayed" in again.text
    retried, _, _ = post(
        url, {"text": "The build failed.", "sender": "ci", "id": "run-41"}, stamp=time.time() + 1
    )
    assert retried.status_code == 202 and retried.json()["duplicate"] is True
    time.sleep(0.5)
    assert len(receiver.got) == 1


def test_a_bad_signature_or_an_old_message_is_refused(hooked) -> None:
    home, _, url = hooked
    wrong, _, _ = post(url, {"text": "hi", "sender": "x"}, key="not-the-key-at-all-0000")
    assert wrong.status_code == 401 and "signature" in wrong.text
    stale, _, _ = post(url, {"text": "hi", "sender": "x"}, stamp=time.time() - REPLAY_WINDOW_S - 5)
    assert stale.status_code == 401 and "timestamp" in stale.text
    unsigned = httpx.post(url, json={"text": "hi"}, trust_env=False)
    assert unsigned.status_code == 401
    nowhere = httpx.post(url.replace("/hooks/hooks", "/hooks/nope"), json={"text": "hi"}, trust_env=False)
    assert nowhere.status_code == 404
    from hermitcrab.cli.client import GatewayClient

    assert GatewayClient(home).request("GET", "/api/sessions")["sessions"] == []


def test_signatures_are_checked_in_constant_form() -> None:
    body, stamp = b'{"text": "x"}', "1700000000"
    good = sign(KEY, stamp, body)
    assert good.startswith("sha256=") and len(good) == 7 + 64
    assert verify(KEY, stamp, body, good, 1700000000.0, set()) is None
    assert "signature" in (verify(KEY, stamp, body + b" ", good, 1700000000.0, set()) or "")
    assert "timestamp" in (verify(KEY, "soon", body, good, 1700000000.0, set()) or "")
    seen: set[str] = set()
    assert verify(KEY, stamp, body, good, 1700000000.0, seen) is None
    assert "replayed" in (verify(KEY, stamp, body, good, 1700000000.0, seen) or "")
    assert hmac.compare_digest(
        good, "sha256=" + hmac.new(KEY.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    )
