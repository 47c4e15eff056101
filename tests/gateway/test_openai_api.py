"""The official openai client works against the gateway's /v1 API."""

from __future__ import annotations

import openai
import pytest

from hermitcrab.inference.scripted import ScriptedProvider


def client_for(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=gw.token, max_retries=0)


def test_models_lists_the_agents(live_gateway) -> None:
    gw = live_gateway()
    assert [m.id for m in client_for(gw).models.list()] == ["main", "agent:main"]


def test_non_streaming_completion(live_gateway) -> None:
    provider = ScriptedProvider("embedded", ["Paris is the capital."])
    gw = live_gateway({"embedded": provider})
    result = client_for(gw).chat.completions.create(
        model="main", messages=[{"role": "user", "content": "Capital of France?"}]
    )
    assert result.choices[0].message.content == "Paris is the capital."
    assert result.choices[0].finish_reason == "stop"
    assert result.model == "main"
    sent = provider.requests[0].messages
    assert sent[0].role == "system" and "HermitCrab" in sent[0].content  # the persona
    assert (sent[-1].role, sent[-1].content) == ("user", "Capital of France?")


def test_streaming_completion(live_gateway) -> None:
    gw = live_gateway({"embedded": ScriptedProvider("embedded", ["one two three four"])})
    stream = client_for(gw).chat.completions.create(
        model="main", messages=[{"role": "user", "content": "count"}], stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 4
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_client_system_message_replaces_the_persona(live_gateway) -> None:
    provider = ScriptedProvider("embedded", ["ok"])
    gw = live_gateway({"embedded": provider})
    client_for(gw).chat.completions.create(
        model="main",
        messages=[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}],
    )
    assert [m.content for m in provider.requests[0].messages] == ["Be terse.", "hi"]


def test_unknown_model_is_404(live_gateway) -> None:
    gw = live_gateway()
    with pytest.raises(openai.NotFoundError, match="no agent named 'gpt-9'"):
        client_for(gw).chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])


def test_wrong_key_is_401(live_gateway) -> None:
    gw = live_gateway()
    bad = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_malformed_messages_are_400(live_gateway) -> None:
    gw = live_gateway()
    with pytest.raises(openai.BadRequestError, match="messages"):
        client_for(gw).chat.completions.create(model="main", messages=[])


ONE_AT_A_TIME = """\
version: 1
gateway:
  port: {port}
models:
  embedded:
    provider: scripted
    concurrency: 1
agents:
  main:
    model: embedded
"""


def test_a_background_call_waits_behind_one_a_person_waits_on(home, live_gateway) -> None:
    import asyncio
    import threading

    from tests.conftest import free_port, wait_for

    home.config.write_text(ONE_AT_A_TIME.format(port=free_port()))
    gate = asyncio.Event()
    provider = ScriptedProvider("embedded", [lambda request: request.messages[-1].content], gate=gate)
    gw = live_gateway({"embedded": provider})
    queue = gw.gateway.queued["embedded"].queue

    def ask(text: str, background: bool) -> threading.Thread:
        headers = {"X-HermitCrab-Priority": "background"} if background else {}
        body = {"model": "main", "messages": [{"role": "user", "content": text}]}

        def post() -> None:
            with gw.client() as client:
                client.post("/v1/chat/completions", json=body, headers=headers).raise_for_status()

        thread = threading.Thread(target=post)
        thread.start()
        return thread

    threads = [ask("running", background=True)]
    wait_for(lambda: provider.requests, what="the first call to reach the model")
    threads.append(ask("scheduled", background=True))
    wait_for(lambda: queue.waiting() == 1, what="the background call to queue")
    threads.append(ask("person", background=False))
    wait_for(lambda: queue.waiting() == 2, what="the interactive call to queue")
    gw.call(gate.set)
    for thread in threads:
        thread.join(timeout=30)
    assert [r.messages[-1].content for r in provider.requests] == ["running", "person", "scheduled"]


WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_tools_tool_choice_and_tool_messages_pass_through(live_gateway) -> None:
    from hermitcrab.inference.scripted import Call, Say

    provider = ScriptedProvider(
        "embedded", [Say(calls=(Call("weather", {"city": "Oslo"}),)), "Snow in Oslo."]
    )
    gw = live_gateway({"embedded": provider})
    client = client_for(gw)
    asked = [{"role": "user", "content": "Weather in Oslo?"}]
    first = client.chat.completions.create(
        model="main", messages=asked, tools=[WEATHER], tool_choice="required"
    )
    (call,) = first.choices[0].message.tool_calls
    assert first.choices[0].finish_reason == "tool_calls"
    assert (call.function.name, call.function.arguments) == ("weather", '{"city": "Oslo"}')
    sent = provider.requests[0]
    assert [t.name for t in sent.tools] == ["weather"] and sent.tool_choice == "required"
    follow_up = [
        *asked,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "-3 C, snow"},
    ]
    stream = client.chat.completions.create(model="main", messages=follow_up, tools=[WEATHER], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Snow in Oslo."
    second = provider.requests[1].messages
    assert second[-2].tool_calls[0].id == call.id
    assert second[-1].role == "tool" and second[-1].tool_results[0].content == "-3 C, snow"


def test_streamed_tool_calls_arrive_as_openai_deltas(live_gateway) -> None:
    from hermitcrab.inference.scripted import Call, Say

    provider = ScriptedProvider("embedded", [Say(calls=(Call("weather", {"city": "Rome"}),))])
    gw = live_gateway({"embedded": provider})
    chunks = list(
        client_for(gw).chat.completions.create(
            model="main", messages=[{"role": "user", "content": "Rome?"}], tools=[WEATHER], stream=True
        )
    )
    deltas = [d for c in chunks if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].function.name == "weather" and deltas[0].id
    assert "".join(d.function.arguments or "" for d in deltas) == '{"city": "Rome"}'


def test_a_tool_message_without_its_call_id_is_refused(live_gateway) -> None:
    gw = live_gateway()
    with pytest.raises(openai.BadRequestError, match="tool_call_id"):
        client_for(gw).chat.completions.create(model="main", messages=[{"role": "tool", "content": "x"}])


def test_an_agent_model_runs_a_full_turn_in_a_durable_session(live_gateway) -> None:
    from hermitcrab.inference.scripted import Call, Say

    asked: list = []

    def model(request):
        asked.append(request)
        last = request.messages[-1]
        if last.role == "user" and last.content == "What is in my notes?":
            return Say(calls=(Call("memory_search", {"query": "boat"}),))
        if last.role == "tool":
            return "Nothing about a boat yet."
        if last.content == "And now?":
            return f"You said before: {request.messages[-3].content}"
        return "Hello."

    gw = live_gateway({"embedded": ScriptedProvider("embedded", [model])})
    client = client_for(gw)
    first = client.chat.completions.create(
        model="agent:main",
        messages=[{"role": "user", "content": "What is in my notes?"}],
        max_tokens=64,
        extra_headers={"X-HermitCrab-Session": "phone"},
    )
    assert first.model == "agent:main" and first.choices[0].message.content == "Nothing about a boat yet."
    assert first.usage is not None and first.usage.total_tokens >= 0
    kinds = [e["kind"] for e in gw.events("phone")]
    assert "tool.call" in kinds and "tool.result" in kinds  # the agent acted: a real turn
    assert {r.max_tokens for r in asked} == {64}  # max_tokens bounds each model call of the turn

    # The session keeps the conversation: a client sends only what is new (here, streamed).
    stream = client.chat.completions.create(
        model="agent:main",
        messages=[{"role": "user", "content": "And now?"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"X-HermitCrab-Session": "phone"},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said before: What is in my notes?"
    assert (
        chunks[-1].usage is not None
        and [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    )
    # Without a session header, the `user` field names the session; without either, "api".
    client.chat.completions.create(
        model="agent:main", messages=[{"role": "user", "content": "hi"}], user="ana"
    )
    assert next(e["kind"] for e in gw.events("ana")) == "message"


def test_an_agent_turn_refuses_what_it_cannot_do(live_gateway) -> None:
    gw = live_gateway({"embedded": ScriptedProvider("embedded", ["ok"])})
    client = client_for(gw)
    with pytest.raises(openai.NotFoundError, match="no agent named 'nobody'"):
        client.chat.completions.create(model="agent:nobody", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="must be the user's"):
        client.chat.completions.create(
            model="agent:main",
            messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        )
    with pytest.raises(openai.BadRequestError, match="invalid session id"):
        client.chat.completions.create(
            model="agent:main", messages=[{"role": "user", "content": "hi"}], user="../etc"
        )
    assert gw.events("api") == []  # nothing was taken


def test_an_agent_turn_that_fails_is_a_clear_error(live_gateway) -> None:
    def broken(request):
        raise RuntimeError("the model fell over")

    gw = live_gateway({"embedded": ScriptedProvider("embedded", [broken])})
    with pytest.raises(openai.APIStatusError) as caught:
        client_for(gw).chat.completions.create(
            model="agent:main", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 502 and "the turn ended without a reply" in str(caught.value)
