"""web_fetch against hostile servers: a page that takes the HTML converter minutes, and a
server that trickles bytes forever. Neither holds the gateway; each ends in a result."""

from __future__ import annotations

import asyncio
import http.server
import shutil
import threading

import pytest

from hermitcrab.inference.scripted import Call, Say, ScriptedProvider
from hermitcrab.tools import web
from tests.agent.test_guard import allow_page
from tests.agent.test_loop import ask, results

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


def test_a_page_too_complex_to_convert_is_stripped_of_tags_instead(monkeypatch) -> None:
    monkeypatch.setattr(web, "HTML_SECONDS", 0.5)
    nested = "<html><body>" + "<ul><li>x" * 16000 + "<p>the end</p></body></html>"
    text = asyncio.run(web.to_text(nested.encode(), "text/html"))
    assert "too complex to convert within 0.5 s" in text and "the end" in text
    assert (
        asyncio.run(web.to_text(b"<html><h1>Crabs</h1><p>molt</p></html>", "text/html")) == "# Crabs\n\nmolt"
    )


class Trickle:
    """Answers 200, then one byte a second, for ever."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        trickle = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                while not trickle.stop.wait(0.2):
                    try:
                        self.wfile.write(b"x")
                        self.wfile.flush()
                    except OSError:
                        return

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://localhost:{self.port}/slow"


def test_a_server_that_trickles_forever_meets_a_deadline(live_gateway, home, monkeypatch) -> None:
    monkeypatch.setattr(web, "TIMEOUT_SECONDS", 1.0)
    trickle = Trickle()
    threading.Thread(target=trickle.server.serve_forever, daemon=True).start()
    try:
        allow_page(home, trickle)
        home.policy.write_text(
            home.policy.read_text().replace("approval_timeout_seconds: 120", "approval_timeout_seconds: 1")
        )
        provider = ScriptedProvider(
            "embedded", [Say(calls=(Call("web_fetch", {"url": trickle.url}),)), "gave up"]
        )
        gw = live_gateway({"embedded": provider})
        # Without a deadline this waits for the turn's 600 s, and the answer never comes in time.
        assert ask(gw, "slow", "fetch")["data"]["text"] == "gave up"
        (result,) = results(gw, "slow")
        assert result["taint"] == trickle.url
    finally:
        trickle.stop.set()
        trickle.server.shutdown()
