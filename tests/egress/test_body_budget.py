"""Request bodies are read whole (to be screened), so one sandbox's connections share a
budget for them: past it a request gets 503, and what a request held comes back."""

from __future__ import annotations

import asyncio
import socket

import pytest

from hermitcrab.egress.http1 import BodyBudget, Downstream, HttpError


async def downstream(budget: BodyBudget, body: bytes) -> tuple[Downstream, socket.socket]:
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    theirs.sendall(b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    return Downstream(reader, writer, budget), theirs


def test_the_budget_is_shared_and_given_back(run) -> None:
    budget = BodyBudget(limit=1000)

    async def scenario() -> None:
        first, keep_first = await downstream(budget, b"a" * 600)
        second, keep_second = await downstream(budget, b"b" * 600)
        assert (await first.request()).body == b"a" * 600
        assert budget.held == 600
        with pytest.raises(HttpError) as refused:
            await second.request()
        assert refused.value.status == 503 and "hold 0 MiB" in refused.value.reason
        assert budget.held == 600  # the refused request kept nothing
        first.release()  # first's request was sent on
        third, keep_third = await downstream(budget, b"c" * 600)
        assert (await third.request()).body == b"c" * 600
        third.release()
        assert budget.held == 0
        for sock in (keep_first, keep_second, keep_third):
            sock.close()

    run(scenario())
