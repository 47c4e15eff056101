"""`hermitcrab bench egress`: what the one door costs, measured in one run.

The same client (the standard library's, run by /usr/bin/python3) fetches from an HTTPS
server on loopback directly on the host, and from inside a sandbox, through the door (the
listening socket the proxy accepts on) and the proxy; a fresh connection and TLS handshake
each time. The two sides take turns, a batch each, so that the machine's drift (this is
often a shared virtual machine) weighs on both alike; each batch's first request, which
pays for the client's start, is left out. reload_ms is the time from writing a policy file
that allows a new port to the first request the proxy lets through to it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

BIG_MB = 64
BATCH = 25  # requests a side per turn; the first of each is a warm-up
DOWNLOADS = 2  # big downloads a side, taking turns too
CLIENT = r"""
import json, os, socket, ssl, sys, time
port, count, big_mb = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
proxy = os.environ.get("HTTPS_PROXY")
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE

def fetch(path):
    if proxy:
        host, pport = proxy.rsplit("/", 1)[1].split(":")
        raw = socket.create_connection((host, int(pport)))
        raw.sendall(f"CONNECT localhost:{port} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n".encode())
        head = b""
        while not head.endswith(b"\r\n\r\n"):  # the proxy sends nothing after it until we speak
            head += raw.recv(4096)
        assert b" 200 " in head.split(b"\r\n")[0], head
    else:
        raw = socket.create_connection(("localhost", port))
    tls = ctx.wrap_socket(raw, server_hostname="localhost")
    tls.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
    total = 0
    while chunk := tls.recv(262144):
        total += len(chunk)
    tls.close()
    return total

times, mb_per_s = [], None
for _ in range(count):
    t = time.perf_counter(); fetch("/small"); times.append((time.perf_counter() - t) * 1000)
if big_mb:
    t = time.perf_counter(); size = fetch("/big"); mb_per_s = size / 1e6 / (time.perf_counter() - t)
print(json.dumps({"times": times, "mb_per_s": mb_per_s}))
"""


SERVER = r"""
import http.server, ssl, sys, threading
folder, big_mb = sys.argv[1], int(sys.argv[2])
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    big = b"x" * (big_mb * 1024 * 1024)
    def do_GET(self):
        body = self.big if self.path == "/big" else b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(f"{folder}/cert.pem", f"{folder}/key.pem")
ports = []
for _ in range(2):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ports.append(str(server.server_address[1]))
print(" ".join(ports), flush=True)
sys.stdin.read()
"""


def _https_servers(folder: Path) -> tuple[subprocess.Popen[str], int, int]:
    """Two HTTPS servers on loopback, in a process of their own: sharing the proxy's
    process (and its GIL) would charge the server's work to the proxy."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    proc = subprocess.Popen(
        ["/usr/bin/python3", "-c", SERVER, str(folder), str(BIG_MB)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    first, second = proc.stdout.readline().split()
    return proc, int(first), int(second)


def _rule(name: str, port: int) -> str:
    lines = [f"- name: {name}", "  hosts: [localhost]", f"  ports: [{port}]", "  allowed_ips: [127.0.0.1]"]
    return "".join(f"    {line}\n" for line in lines)


def _allowed_through(door: socket.socket, port: int) -> bool:
    with door as s:
        s.sendall(f"CONNECT localhost:{port} HTTP/1.1\r\n\r\n".encode())
        return b" 200 " in s.recv(256)


async def _measure(count: int) -> dict[str, Any]:
    from hermitcrab.gateway.parts import build_runtime
    from hermitcrab.store import Store

    with tempfile.TemporaryDirectory(prefix="hcbe") as tmp:
        root = Path(tmp)
        servers, port, new_port = _https_servers(root)
        policy = root / "policy.yaml"
        head = "version: 1\nnetwork:\n  rules:\n"
        policy.write_text(head + _rule("bench", port))
        store = Store(root / "state.db")
        runtime = build_runtime(store, policy_file=policy, workspaces=root / "w", state_root=root / "s")
        proxy = runtime.egress
        assert proxy is not None
        watcher = asyncio.ensure_future(runtime.watch_policy_file(0.02))
        try:
            await runtime.create("bench")
            direct: Side = {"times": [], "mb_per_s": []}
            proxied: Side = {"times": [], "mb_per_s": []}

            async def turn(requests: int, big: bool) -> None:
                for side, run in ((direct, _run_host), (proxied, _run_inside)):
                    result = json.loads(await run(runtime, port, requests, big))
                    side["times"] += result["times"][1:]
                    if big:
                        side["mb_per_s"].append(result["mb_per_s"])

            for _ in range(-(-count // (BATCH - 1))):
                await turn(BATCH, big=False)
            for _ in range(DOWNLOADS):
                await turn(1, big=True)
            # Reload: write the file, then ask the proxy until the new port is let through.
            assert not await asyncio.to_thread(_allowed_through, await proxy.knock("bench"), new_port)
            await asyncio.sleep(0.1)  # let the watcher settle on the current file first
            started = time.perf_counter()
            policy.write_text(head + _rule("bench", port) + _rule("new", new_port))
            while not await asyncio.to_thread(_allowed_through, await proxy.knock("bench"), new_port):
                await asyncio.sleep(0.001)
            reload_ms = (time.perf_counter() - started) * 1000
        finally:
            watcher.cancel()
            await runtime.stop()
            if runtime.egress is not None:
                await runtime.egress.close_all()
            store.close()
            servers.kill()
            servers.wait()
    direct_p50 = statistics.median(direct["times"])
    proxied_p50 = statistics.median(proxied["times"])
    direct_mb_s = statistics.mean(direct["mb_per_s"])
    proxied_mb_s = statistics.mean(proxied["mb_per_s"])
    return {
        "direct_p50_ms": round(direct_p50, 3),
        "proxied_p50_ms": round(proxied_p50, 3),
        "added_p50_ms": round(proxied_p50 - direct_p50, 3),
        "direct_mb_s": round(direct_mb_s, 1),
        "proxied_mb_s": round(proxied_mb_s, 1),
        "throughput_ratio": round(proxied_mb_s / direct_mb_s, 3),
        "reload_ms": round(reload_ms, 1),
        "requests": len(direct["times"]),
        "download_mb": BIG_MB,
    }


Side = dict[str, list[float]]


async def _run_host(runtime: Any, port: int, requests: int, big: bool) -> str:
    argv = ["/usr/bin/python3", "-c", CLIENT, str(port), str(requests), str(BIG_MB if big else 0)]
    done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, check=True, text=True)
    return done.stdout


async def _run_inside(runtime: Any, port: int, requests: int, big: bool) -> str:
    argv = ["python3", "-c", CLIENT, str(port), str(requests), str(BIG_MB if big else 0)]
    inside = await runtime.exec("bench", argv, timeout=300)
    if inside.exit_code != 0:
        raise RuntimeError(f"the client failed in the sandbox: {inside.stderr.decode()}")
    return inside.stdout.decode()


def egress(json_output: bool, count: int) -> None:
    if shutil.which("openssl") is None:
        raise SystemExit(
            "error: the benchmark needs openssl to make a test certificate. fix: apt-get install openssl"
        )
    results = asyncio.run(_measure(max(count, 5)))
    if json_output:
        print(json.dumps(results, indent=2))
        return
    r = results
    print(f"HTTPS GET, direct    p50 {r['direct_p50_ms']:8.3f} ms")
    added = r["added_p50_ms"]
    print(f"HTTPS GET, proxied   p50 {r['proxied_p50_ms']:8.3f} ms   added {added:.3f} ms (target <= 1)")
    print(f"download {r['download_mb']} MB      {r['proxied_mb_s']:.0f} of {r['direct_mb_s']:.0f} MB/s = "
          f"{r['throughput_ratio']:.2f} (target >= 0.5)")  # fmt: skip
    print(f"policy reload        {r['reload_ms']:8.1f} ms   (target <= 100; OpenShell 10.1 s)")
