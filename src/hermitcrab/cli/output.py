"""How the CLI speaks: errors to stderr with a fix, results to stdout."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn


def fail(message: str, code: int = 1) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))
