"""A loopback server for a test's fake service: its app under uvicorn, on a thread."""

from __future__ import annotations

import threading
import time

import uvicorn
from starlette.applications import Starlette


def serve(app: Starlette, port: int) -> uvicorn.Server:
    """Started and listening when this returns; `should_exit = True` stops it."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return server
