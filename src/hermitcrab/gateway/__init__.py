"""The daemon: the ASGI app, its auth, the session and OpenAI-compatible APIs."""
