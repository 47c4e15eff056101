"""How the CLI speaks: errors to stderr with a fix, results to stdout."""

from __future__ import annotations

import json
import re
import sys
from typing import Any, NoReturn


def fail(message: str, code: int = 1) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


# Control characters (escape sequences, carriage returns, C1 codes) from what a model or a
# web page wrote would let it redraw the terminal: "approve `git status`?" over `curl | sh`.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def shown(text: object, one_line: bool = False) -> str:
    """Text from outside, safe to print to a terminal: control characters escaped."""
    out = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))
    return out.replace("\n", "\\n") if one_line else out
