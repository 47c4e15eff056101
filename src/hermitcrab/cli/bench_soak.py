"""`hermitcrab bench soak`: the daemon under steady load, long enough to see a trend.

A fresh home in a temporary folder runs the real daemon (its own process) with scripted
models: `main` answers with text, `worker` makes one exec call and then answers. The
scheduler's clock runs 60 times fast with a job every minute, so scheduled turns run
alongside. Measured, in one run:

- latency: turns one at a time, each sent and its reply seen over the session's WebSocket;
  the gateway's overhead is that time minus the model's (the scripted model's own time,
  from the usage log);
- throughput: bursts of text turns over many sessions, then the same over 1,000 sessions
  at once, and tool turns; turns per second from the store's own timestamps;
- resources: the daemon's RSS, open descriptors and threads, sampled as the turns go by;
  the RSS slope is fitted over those samples, in MB per 1,000 turns.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from hermitcrab.cli.bench_home import BenchHome, report

CONFIG = """\
version: 1
gateway:
  port: {port}
  max_pending_approvals: 10000
models:
  text:
    provider: scripted
    concurrency: 64
    replies: ["All done here."]
  tools:
    provider: scripted
    concurrency: 64
    replies:
      - after: user
        calls:
          - name: exec
            arguments: {{command: "true"}}
      - after: tool
        text: "ran it"
agents:
  main:
    model: text
    max_history_messages: 4
  worker:
    model: tools
    tools: [exec]
    max_history_messages: 4
"""


class Poster:
    """One kept-alive HTTP/1.1 connection that POSTs messages. A lean client of our own:
    on two cores, httpx spent as much CPU sending as the gateway spent answering, so the
    bench measured the client."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: str) -> None:
        self._reader, self._writer, self._head = reader, writer, head

    @classmethod
    async def open(cls, port: int, token: str) -> Poster:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = (
            f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        )
        return cls(reader, writer, head)

    async def post(self, session: str, text: str, agent: str) -> None:
        body = json.dumps({"text": text, "agent": agent}).encode()
        self._writer.write(
            f"POST /api/sessions/{session}/messages HTTP/1.1\r\n{self._head}"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await self._reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 202"):
            raise RuntimeError(f"the gateway refused a message: {head[:200]!r}")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await self._reader.readexactly(length)

    def close(self) -> None:
        self._writer.close()


SPEED = 60.0  # the scheduler's clock: a job every simulated minute runs every real second


def _proc(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status if ":" in line)
    return {
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
        "threads": int(fields["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    if len(points) < 2:
        return 0.0
    mean_x = statistics.fmean(p[0] for p in points)
    mean_y = statistics.fmean(p[1] for p in points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else 0.0


class Soak(BenchHome):
    def __init__(self, home: Path) -> None:
        super().__init__(home, HERMITCRAB_SCHEDULER_SPEED=str(SPEED))
        self.samples: list[tuple[int, dict[str, float]]] = []  # (turns so far, resources)
        self.turns = 0

    def start(self) -> None:
        self.onboard(CONFIG.format(port=self.port))
        self.hc("up")
        self.daemon = self.pid or 0
        self.headers = {"Authorization": f"Bearer {self.token}"}
        self.base = f"http://127.0.0.1:{self.port}"

    def sample(self) -> None:
        self.samples.append((self.turns, _proc(self.daemon)))

    async def latency(self, count: int) -> dict[str, float]:
        """Turns one at a time in one session, the reply seen on the session's WebSocket."""
        from websockets.asyncio.client import connect

        session = "soak-latency"
        times = []
        poster = await Poster.open(self.port, self.token)
        try:
            ws_url = self.base.replace("http", "ws") + f"/api/sessions/{session}/ws"
            async with connect(ws_url, additional_headers=self.headers) as ws:
                for n in range(count):
                    started = time.perf_counter()
                    await poster.post(session, f"hello {n}", "main")
                    while json.loads(await ws.recv())["kind"] not in ("reply", "turn.failed"):
                        pass
                    times.append((time.perf_counter() - started) * 1000)
        finally:
            poster.close()
        self.turns += count
        model_ms = self._model_ms(session)
        return {"turn_p50_ms": statistics.median(times), "model_p50_ms": model_ms}

    def _model_ms(self, session: str) -> float:
        with self.store() as db:
            rows = [r[0] for r in db.execute("SELECT latency_ms FROM usage WHERE session = ?", (session,))]
        return statistics.median(rows) if rows else 0.0

    async def burst(self, sessions: int, per_session: int, agent: str, tag: str) -> float:
        """Messages over many sessions at once; turns per second from the store's timestamps
        (first message committed to last answer committed)."""
        messages = [(f"{tag}-{s}", f"{tag} {n}") for n in range(per_session) for s in range(sessions)]
        await self._post_all(messages, agent)
        total = sessions * per_session
        while True:
            answered = self._answered(tag)
            if answered[0] >= total:
                break
            await asyncio.sleep(0.2)
        self.turns += total
        self.sample()
        first, last = answered[1], answered[2]
        return total / max(last - first, 1e-6)

    async def _post_all(self, messages: list[tuple[str, str]], agent: str, connections: int = 32) -> None:
        """POST every message over `connections` kept-alive connections at once."""
        todo = iter(messages)

        async def connection() -> None:
            poster = await Poster.open(self.port, self.token)
            try:
                for session, text in todo:
                    await poster.post(session, text, agent)
            finally:
                poster.close()

        await asyncio.gather(*(connection() for _ in range(connections)))

    def _answered(self, tag: str) -> tuple[int, float, float]:
        with self.store() as db:
            done, last = db.execute(
                "SELECT COUNT(*), MAX(created_at) FROM events WHERE session_id LIKE ? "
                "AND kind IN ('reply', 'turn.failed')",
                (f"{tag}-%",),
            ).fetchone()
            first = db.execute(
                "SELECT MIN(created_at) FROM events WHERE session_id LIKE ? AND kind = 'message'",
                (f"{tag}-%",),
            ).fetchone()[0]
        return done, first or 0.0, last or 0.0

    def job_runs(self) -> int:
        with self.store() as db:
            return int(db.execute("SELECT COUNT(*) FROM job_runs").fetchone()[0])

    def stop(self) -> None:
        self.hc("down", check=False)


async def _run(soak: Soak, rounds: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=soak.base, headers=soak.headers, trust_env=False) as client:
        await client.post("/api/jobs", json={"text": "scheduled check", "every": "60s"})
    await soak.latency(50)  # warm: imports on first use, the model routes, the sandbox
    soak.sample()
    start = soak.samples[-1][1]
    latency = await soak.latency(300)
    wide = await soak.burst(1000, 1, "main", "wide")
    tools = await soak.burst(20, 10, "worker", "tools")
    # The steady part: the same bursts again and again; the trend is fitted over these
    # (after the first, which still fills caches), so one-off costs do not read as a leak.
    steady_from = len(soak.samples)
    rates = [await soak.burst(50, 20, "main", f"text{r}") for r in range(rounds)]
    end = soak.samples[-1][1]
    steady = soak.samples[steady_from + 1 :] if rounds > 2 else soak.samples[steady_from:]
    slope = _slope([(turns / 1000, res["rss_mb"]) for turns, res in steady])
    return {
        "turns": soak.turns,
        "turns_per_s": round(statistics.median(rates), 1),
        "turns_per_s_1000_sessions": round(wide, 1),
        "tool_turns_per_s": round(tools, 1),
        "gateway_overhead_p50_ms": round(latency["turn_p50_ms"] - latency["model_p50_ms"], 2),
        "turn_p50_ms": round(latency["turn_p50_ms"], 2),
        "rss_start_mb": round(start["rss_mb"], 1),
        "rss_end_mb": round(end["rss_mb"], 1),
        "rss_slope_mb_per_1k_turns": round(slope, 3),
        "open_fds_start": start["fds"],
        "open_fds_end": end["fds"],
        "threads_start": start["threads"],
        "threads_end": end["threads"],
        "job_runs": soak.job_runs(),
    }


def run(rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hc-soak-") as tmp:
        soak = Soak(Path(tmp))
        started = time.monotonic()
        try:
            soak.start()
            results = asyncio.run(_run(soak, rounds))
        finally:
            soak.stop()
        results["seconds"] = round(time.monotonic() - started, 1)
        return results


def soak(json_output: bool, rounds: int) -> None:
    report(run(rounds), json_output)
