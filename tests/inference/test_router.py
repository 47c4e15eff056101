"""The route: fail over on 429/5xx/connection errors, honour Retry-After, never switch
mid-answer, record usage, refuse past the spend cap."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import AsyncIterator

import pytest

from hermitcrab.config.schema import OpenAIModel
from hermitcrab.errors import ProviderError, ProviderUnavailable
from hermitcrab.inference import ChatMessage, ChatRequest, Chunk, complete
from hermitcrab.inference import router as router_module
from hermitcrab.inference.openai_compat import OpenAICompatProvider
from hermitcrab.inference.router import Price, Router, Usage
from hermitcrab.inference.scripted import ScriptedProvider

ASK = ChatRequest([ChatMessage.of("user", "hi")])


def route(*providers, **kw) -> Router:
    return Router("main", [(p, Price(0, 1_000_000)) for p in providers], **kw)


def test_fails_over_in_order_and_records_who_answered() -> None:
    used: list[Usage] = []
    busy = ScriptedProvider("busy", [ProviderUnavailable("HTTP 429")])
    down = ScriptedProvider("down", [ProviderUnavailable("HTTP 503")])
    good = ScriptedProvider("good", ["three words here"])
    result = asyncio.run(complete(route(busy, down, good, on_usage=used.append), ASK))
    assert result.text == "three words here"
    assert [len(p.requests) for p in (busy, down, good)] == [1, 1, 1]
    assert [(u.model, u.completion_tokens, u.cost_usd) for u in used] == [("good", 3, 3.0)]


def test_waits_as_long_as_retry_after_asks_then_tries_again(monkeypatch: pytest.MonkeyPatch) -> None:
    waited: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waited.append(seconds)

    monkeypatch.setattr(router_module.asyncio, "sleep", fake_sleep)
    first = ScriptedProvider("first", [ProviderUnavailable("429", retry_after=7.0), "ok now"])
    second = ScriptedProvider("second", [ProviderUnavailable("429", retry_after=3.0)])
    result = asyncio.run(complete(route(first, second, max_wait_seconds=30), ASK))
    assert result.text == "ok now" and waited == [3.0]  # the shortest wait any model asked for
    capped = ScriptedProvider("slow", [ProviderUnavailable("429", retry_after=3600.0), "later"])
    asyncio.run(complete(route(capped, max_wait_seconds=5), ASK))
    assert waited[-1] == 5


def test_gives_up_after_the_rounds_with_every_reason() -> None:
    down = ScriptedProvider("down", [ProviderUnavailable("HTTP 503")])
    with pytest.raises(ProviderError, match=r"every model of route 'main' failed \(HTTP 503; HTTP 503\)"):
        asyncio.run(complete(route(down, rounds=2, max_wait_seconds=0), ASK))


def test_a_real_error_does_not_fail_over() -> None:
    bad = ScriptedProvider("bad", [RuntimeError("400 bad request")])
    spare = ScriptedProvider("spare", ["unused"])
    with pytest.raises(ProviderError, match="400 bad request"):
        asyncio.run(complete(route(bad, spare), ASK))
    assert spare.requests == []


def test_never_switches_in_the_middle_of_an_answer() -> None:
    class Breaks:
        name = "breaks"

        async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
            yield Chunk("Hel")
            raise ProviderUnavailable("connection lost")

    spare = ScriptedProvider("spare", ["other answer"])
    with pytest.raises(ProviderUnavailable):
        asyncio.run(complete(route(Breaks(), spare), ASK))
    assert spare.requests == []


def test_spend_cap_refuses_before_calling() -> None:
    model = ScriptedProvider("m", ["x"])
    capped = route(model, refuse=lambda: "agent 'main' has spent $5.0000 today, its cap is $5.0000")
    with pytest.raises(ProviderError, match="its cap is"):
        asyncio.run(complete(capped, ASK))
    assert model.requests == []


class Unavailable(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.send_response(503)
        self.send_header("Retry-After", "0")
        self.send_header("Content-Type", "application/json")
        body = b'{"error": {"message": "overloaded", "type": "server_error"}}'
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_real_servers_503_then_fallback_to_a_healthy_one(live_gateway, monkeypatch) -> None:
    sick = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Unavailable)
    threading.Thread(target=sick.serve_forever, daemon=True).start()
    healthy = live_gateway({"embedded": ScriptedProvider("embedded", ["from the fallback"])})
    monkeypatch.setenv("FALLBACK_KEY", healthy.token)
    try:
        primary = OpenAICompatProvider(
            "primary",
            OpenAIModel(
                provider="openai", base_url=f"http://127.0.0.1:{sick.server_address[1]}/v1", model="m"
            ),
        )
        fallback = OpenAICompatProvider(
            "fallback",
            OpenAIModel(
                provider="openai", base_url=f"{healthy.url}/v1", model="main", api_key_env="FALLBACK_KEY"
            ),
        )
        used: list[Usage] = []
        result = asyncio.run(complete(route(primary, fallback, on_usage=used.append), ASK))
    finally:
        sick.shutdown()
    assert result.text == "from the fallback"
    assert [u.model for u in used] == ["fallback"]


def remote(server, name: str, timeout: float = 30.0) -> OpenAICompatProvider:
    config = OpenAIModel(
        provider="openai", base_url=server.base_url, model=name, request_timeout_seconds=timeout
    )
    return OpenAICompatProvider(name, config)


def test_real_servers_429_500_and_slow_each_fail_over_in_order() -> None:
    from tests.inference.model_server import model_servers

    script = [[("429", 0)], [("500",)], [("slow", 3)], [("ok", "from the fourth")]]
    with model_servers(*script) as (limited, broken, slow, good):
        used: list[Usage] = []
        chain = [remote(limited, "limited"), remote(broken, "broken"), remote(slow, "slow", timeout=0.5)]
        chain.append(remote(good, "good"))
        result = asyncio.run(complete(route(*chain, on_usage=used.append, rounds=1), ASK))
    assert result.text == "from the fourth"
    assert [len(s.seen) for s in (limited, broken, slow, good)] == [1, 1, 1, 1]
    assert [(u.model, u.prompt_tokens, u.completion_tokens) for u in used] == [("good", 5, 3)]


def test_a_real_servers_retry_after_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.inference.model_server import model_servers

    waited: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded_sleep(seconds: float) -> None:
        waited.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(router_module.asyncio, "sleep", recorded_sleep)
    with model_servers([("429", 2), ("ok", "second try")]) as (server,):
        result = asyncio.run(complete(route(remote(server, "only"), max_wait_seconds=30), ASK))
    assert result.text == "second try" and len(server.seen) == 2
    assert waited == [2.0]  # as long as the server's Retry-After asked, no more
