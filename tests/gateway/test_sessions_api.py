"""Messages are committed first, answered as events, one turn at a time per session."""

from __future__ import annotations

import asyncio
import json
import time

from websockets.sync.client import connect

from hermitcrab.inference.base import ChatRequest
from hermitcrab.inference.scripted import ScriptedProvider
from tests.conftest import wait_for


def echo_last(request: ChatRequest) -> str:
    return f"echo: {request.messages[-1].content}"


def test_message_is_accepted_then_answered(live_gateway) -> None:
    gw = live_gateway({"embedded": ScriptedProvider("embedded", ["Hi there, human."])})
    with gw.client() as client:
        response = client.post("/api/sessions/s1/messages", json={"text": "hello"})
        assert response.status_code == 202
        message_id = response.json()["message_id"]
    answers = gw.wait_answers("s1", 1)
    assert answers[0]["kind"] == "reply" and answers[0]["reply_to"] == message_id
    assert answers[0]["data"]["text"] == "Hi there, human."
    kinds = [e["kind"] for e in gw.events("s1")]
    assert kinds == ["message", "turn.started", "model.response", "reply"]
    with gw.client() as client:
        sessions = client.get("/api/sessions").json()["sessions"]
    assert [(s["id"], s["agent"], s["events"]) for s in sessions] == [("s1", "main", 4)]


def test_websocket_streams_tokens_then_the_reply(live_gateway) -> None:
    gw = live_gateway({"embedded": ScriptedProvider("embedded", ["one two three"])})
    ws_url = gw.url.replace("http", "ws") + "/api/sessions/w/ws"
    with connect(ws_url, additional_headers=gw.headers, open_timeout=5) as ws:
        with gw.client() as client:
            client.post("/api/sessions/w/messages", json={"text": "count"})
        seen = []
        while not seen or seen[-1]["kind"] != "reply":
            seen.append(json.loads(ws.recv(timeout=10)))
    kinds = [e["kind"] for e in seen]
    assert kinds[:2] == ["message", "turn.started"] and kinds[-1] == "reply"
    tokens = "".join(e["data"]["text"] for e in seen if e["kind"] == "token")
    assert tokens == "one two three" == seen[-1]["data"]["text"]


def test_websocket_replays_from_after(live_gateway) -> None:
    gw = live_gateway()
    with gw.client() as client:
        client.post("/api/sessions/r/messages", json={"text": "first"})
    gw.wait_answers("r", 1)
    ws_url = gw.url.replace("http", "ws") + "/api/sessions/r/ws?after=0"
    with connect(ws_url, additional_headers=gw.headers, open_timeout=5) as ws:
        replayed = [json.loads(ws.recv(timeout=5)) for _ in range(4)]
    assert [e["kind"] for e in replayed] == ["message", "turn.started", "model.response", "reply"]


def test_messages_sent_mid_turn_queue_and_run_in_order(live_gateway) -> None:
    gate = asyncio.Event()
    provider = ScriptedProvider("embedded", [echo_last], gate=gate)
    gw = live_gateway({"embedded": provider})
    with gw.client() as client:
        first = client.post("/api/sessions/q/messages", json={"text": "A"}).json()["message_id"]
        wait_for(lambda: len(provider.requests) == 1, what="the first turn to reach the model")
        second = client.post("/api/sessions/q/messages", json={"text": "B"}).json()["message_id"]
        third = client.post("/api/sessions/q/messages", json={"text": "C"}).json()["message_id"]
    # Both are committed at once, but no turn starts for them while A's is running.
    time.sleep(0.3)
    events = gw.events("q")
    assert [e["id"] for e in events if e["kind"] == "message"] == [first, second, third]
    assert [e["reply_to"] for e in events if e["kind"] == "turn.started"] == [first]
    assert len(provider.requests) == 1
    gw.call(gate.set)
    answers = gw.wait_answers("q", 3)
    assert [(a["reply_to"], a["data"]["text"]) for a in answers] == [
        (first, "echo: A"),
        (second, "echo: B"),
        (third, "echo: C"),
    ]
    # Each later turn saw the earlier exchanges, in order.
    last_request = [(m.role, m.content) for m in provider.requests[2].messages if m.role != "system"]
    assert last_request == [
        ("user", "A"),
        ("assistant", "echo: A"),
        ("user", "B"),
        ("assistant", "echo: B"),
        ("user", "C"),
    ]
    # And no turn started before the previous one answered.
    log = gw.events("q")
    order = [(e["kind"], e["reply_to"]) for e in log if e["kind"] in ("turn.started", "reply")]
    assert order == [
        ("turn.started", first),
        ("reply", first),
        ("turn.started", second),
        ("reply", second),
        ("turn.started", third),
        ("reply", third),
    ]


def test_sessions_run_independently(live_gateway) -> None:
    gate = asyncio.Event()
    blocked = ScriptedProvider("embedded", [echo_last], gate=gate)
    gw = live_gateway({"embedded": blocked})
    with gw.client() as client:
        client.post("/api/sessions/one/messages", json={"text": "x"})
        client.post("/api/sessions/two/messages", json={"text": "y"})
    wait_for(lambda: len(blocked.requests) == 2, what="both sessions to start a turn")
    gw.call(gate.set)
    assert gw.wait_answers("one", 1)[0]["data"]["text"] == "echo: x"
    assert gw.wait_answers("two", 1)[0]["data"]["text"] == "echo: y"


def test_huge_message_is_refused_and_nothing_is_stored(live_gateway) -> None:
    gw = live_gateway()
    with gw.client() as client:
        response = client.post("/api/sessions/big/messages", json={"text": "x" * (1024 * 1024)})
        assert response.status_code == 413
        assert "exceeds the limit" in response.json()["error"]["message"]
        just_over = client.post("/api/sessions/big/messages", json={"text": "y" * (256 * 1024 + 1)})
        assert just_over.status_code == 413
        assert "max_message_bytes" in just_over.json()["error"]["message"]
        assert client.get("/api/sessions/big/events").status_code == 404
        # The gateway is still fine afterwards.
        assert client.post("/api/sessions/big/messages", json={"text": "small"}).status_code == 202
    assert gw.wait_answers("big", 1)[0]["kind"] == "reply"


def test_bad_requests_get_clear_errors(live_gateway) -> None:
    gw = live_gateway()
    with gw.client() as client:
        bad_json = client.post(
            "/api/sessions/s/messages", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["error"]["message"]
        no_text = client.post("/api/sessions/s/messages", json={"txt": "hi"})
        assert no_text.status_code == 400 and '{"text": "hello"}' in no_text.json()["error"]["message"]
        bad_id = client.post("/api/sessions/%2E%2E/messages", json={"text": "hi"})
        assert bad_id.status_code == 400 and "invalid session id" in bad_id.json()["error"]["message"]
        unknown_agent = client.post("/api/sessions/s/messages", json={"text": "hi", "agent": "ghost"})
        assert unknown_agent.status_code == 404


def test_provider_failure_becomes_a_failed_turn_not_a_hang(live_gateway) -> None:
    provider = ScriptedProvider("embedded", [RuntimeError("model exploded"), "fine again"])
    gw = live_gateway({"embedded": provider})
    with gw.client() as client:
        client.post("/api/sessions/f/messages", json={"text": "1"})
        client.post("/api/sessions/f/messages", json={"text": "2"})
    answers = gw.wait_answers("f", 2)
    assert answers[0]["kind"] == "turn.failed" and "model exploded" in answers[0]["data"]["error"]
    assert answers[1]["kind"] == "reply" and answers[1]["data"]["text"] == "fine again"


def test_a_websocket_handler_ends_when_its_client_goes(live_gateway) -> None:
    """A handler that only writes would wait for its next event to notice a closed client,
    and hold up the gateway's shutdown until then."""
    gw = live_gateway()
    base = gw.url.replace("http", "ws")
    for path, channel in [("/api/sessions/gone/ws", "gone"), ("/api/approvals/ws", "_approvals")]:
        with connect(base + path, additional_headers=gw.headers, open_timeout=5):
            wait_for(lambda channel=channel: channel in gw.gateway.hub._listeners, what=f"{path} to listen")
        wait_for(lambda channel=channel: channel not in gw.gateway.hub._listeners, what=f"{path} to end")


def test_only_models_an_agent_routes_to_are_loaded_and_they_are_warmed(live_gateway, home) -> None:
    """A model defined but unused loaded at start (231 MB for the embedded one); a used
    remote one built its client on the first turn (32x a warm one)."""

    class Watched(ScriptedProvider):
        def __init__(self, name: str) -> None:
            super().__init__(name)
            self.loaded = False

        async def start(self) -> None:
            self.loaded = True

    home.config.write_text(
        home.config.read_text().replace("models:\n", "models:\n  spare:\n    provider: scripted\n", 1)
    )
    used, spare = Watched("embedded"), Watched("spare")
    live_gateway({"embedded": used, "spare": spare})
    wait_for(lambda: used.loaded, what="the routed model to be warmed")
    time.sleep(0.2)  # the spare would have been warmed in the same pass
    assert not spare.loaded


def test_a_message_delivered_twice_is_taken_once(live_gateway) -> None:
    """A channel or client that retries (a lost response, a redelivered webhook) sends the
    same source_id: the message is kept once and answered once."""
    provider = ScriptedProvider("embedded", ["once", "twice?"])
    gw = live_gateway({"embedded": provider})
    with gw.client() as client:
        body = {"text": "hello", "source_id": "chat-42"}
        first = client.post("/api/sessions/d/messages", json=body)
        again = client.post("/api/sessions/d/messages", json=body)
        other = client.post("/api/sessions/d/messages", json={"text": "hello", "source_id": "chat-43"})
        bad = client.post("/api/sessions/d/messages", json={"text": "x", "source_id": 7})
    assert first.status_code == 202 and again.status_code == 200
    assert again.json() == {
        "message_id": first.json()["message_id"],
        "session_id": "d",
        "status": "duplicate",
    }
    assert other.status_code == 202 and bad.status_code == 400
    gw.wait_answers("d", 2)
    events = gw.events("d")
    assert [e["data"].get("source_id") for e in events if e["kind"] == "message"] == ["chat-42", "chat-43"]
    assert len(provider.requests) == 2
