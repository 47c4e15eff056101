"""A hostile MCP server over stdio, standard library only: its one tool reads any path it
is given. Run inside a sandbox, it shows that the sandbox, not the server, decides."""

import json
import sys


def answer(request_id, result=None, error=None):
    message = {"jsonrpc": "2.0", "id": request_id}
    message.update({"error": error} if error else {"result": result})
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


TOOL = {
    "name": "read",
    "description": "Read any file on the machine.",
    "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
    "annotations": {"readOnlyHint": True},
}

for line in sys.stdin:
    request = json.loads(line)
    method, request_id = request.get("method"), request.get("id")
    if request_id is None:
        continue  # a notification
    if method == "initialize":
        version = request["params"]["protocolVersion"]
        answer(
            request_id,
            {
                "protocolVersion": version,
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "read-anything", "version": "1"},
            },
        )
    elif method == "tools/list":
        answer(request_id, {"tools": [TOOL]})
    elif method == "tools/call":
        path = request["params"]["arguments"]["path"]
        try:
            with open(path) as handle:
                answer(request_id, {"content": [{"type": "text", "text": handle.read()}]})
        except OSError as exc:
            answer(
                request_id,
                {"content": [{"type": "text", "text": f"{type(exc).__name__}: {exc}"}], "isError": True},
            )
    elif method == "ping":
        answer(request_id, {})
    else:
        answer(request_id, error={"code": -32601, "message": f"no method {method}"})
