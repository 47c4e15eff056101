"""Read a YAML file into a pydantic model; every error names file, line, key, expectation and fix."""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from hermitcrab.config.schema import Config
from hermitcrab.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
Loc = tuple[str | int, ...]


def _yaml() -> Any:
    from ruamel.yaml import YAML  # imported here: only commands that read files pay for it

    return YAML(typ="rt")


def parse_yaml(path: Path) -> Any:
    """Parse a YAML file, keeping line numbers; a syntax error names its line and column."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found. fix: run `hermitcrab onboard` to create it") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_yaml_text(text, path)


def parse_yaml_text(text: str, path: Path | str) -> Any:
    """Parse YAML text; `path` names it in errors."""
    from ruamel.yaml.error import MarkedYAMLError

    try:
        return _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(
            f"{where}: YAML syntax error: {problem}. "
            "fix: check the indentation and quoting on that line (values containing ':' need quotes)"
        ) from None


def _line_of(data: Any, loc: Loc) -> int | None:
    """The 1-based line of the deepest part of `loc` that exists in the parsed YAML."""
    line: int | None = None
    node = data
    for part in loc:
        lc = getattr(node, "lc", None)
        if lc is None:
            break
        try:
            if isinstance(node, dict) and part in node:
                line = lc.key(part)[0] + 1
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                line = lc.item(part)[0] + 1
                node = node[part]
            else:
                break
        except (KeyError, IndexError, TypeError):
            break
    if line is None and hasattr(data, "lc"):
        line = data.lc.line + 1
    return line


def _strip_annotated(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _union_members(tp: Any) -> list[Any]:
    tp = _strip_annotated(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(tp) if a is not type(None)]
    return []


def _tag_of(model: Any) -> str | None:
    fields = getattr(model, "model_fields", {})
    args = typing.get_args(fields["provider"].annotation) if "provider" in fields else ()
    return args[0] if args else None


def _child_type(tp: Any, part: str | int) -> Any:
    tp = _strip_annotated(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        field = tp.model_fields.get(str(part))
        return field.annotation if field else None
    if typing.get_origin(tp) in (dict, list):
        return typing.get_args(tp)[-1]
    return None


def _clean_loc(model: type[BaseModel], loc: Loc) -> tuple[Loc, Any]:
    """Drop the union tags pydantic puts in locations (models.x.openai.base_url has no
    'openai' key in the file) and return the type the location ends in."""
    out: list[str | int] = []
    current: Any = model
    for part in loc:
        members = _union_members(current)
        if members:
            tagged = [m for m in members if _tag_of(m) == part]
            if tagged:
                current = tagged[0]
                continue
            current = members[0]
        out.append(part)
        current = _child_type(current, part)
    return tuple(out), current


def _dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _fix_for(model: type[BaseModel], raw_loc: Loc, loc: Loc, error: dict[str, Any]) -> str:
    kind = error["type"]
    key = loc[-1] if loc else ""
    if kind == "extra_forbidden":
        _, owner = _clean_loc(model, raw_loc[:-1])
        owner = _strip_annotated(owner)
        known = sorted(owner.model_fields) if hasattr(owner, "model_fields") else []
        close = difflib.get_close_matches(str(key), known, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        listed = f"known keys here: {', '.join(known)}" if known else "remove it"
        return f"{hint}{listed}"
    if kind == "missing":
        return f"add '{key}:' here"
    if kind == "union_tag_invalid":
        return f"set 'provider' to one of: {error.get('ctx', {}).get('expected_tags', '')}"
    if kind == "literal_error":
        return f"use {error.get('ctx', {}).get('expected', 'one of the allowed values')}"
    return f"change '{_dotted(loc)}' to a valid value"


def load_yaml_model(path: Path | str, model: type[M], data: Any = None) -> M:
    """Validate a YAML file against `model`; raise one ConfigError that lists every problem."""
    if data is None:
        data = parse_yaml(Path(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}:1: expected a mapping of keys (like 'version: 1') at the top, "
            f"found {type(data).__name__}. fix: see the example in the README"
        )
    try:
        return model.model_validate(_plain(data))
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            raw_loc = tuple(error["loc"])
            loc, _ = _clean_loc(model, raw_loc)
            if error["type"] == "union_tag_invalid":
                loc = (*loc, str(error.get("ctx", {}).get("discriminator", "")).strip("'\""))
            line = _line_of(data, loc)
            got = error.get("input")
            got_text = ""
            if error["type"] not in ("missing", "extra_forbidden") and not isinstance(got, dict | list):
                got_text = f" (got {got!r})"
            where = f"{path}:{line}" if line else str(path)
            msg = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
            lines.append(
                f"{where}: {_dotted(loc)}: {msg}{got_text}. fix: {_fix_for(model, raw_loc, loc, error)}"
            )
        raise ConfigError("\n".join(lines)) from None


def _plain(data: Any) -> Any:
    if isinstance(data, dict):
        return {str(k): _plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_plain(v) for v in data]
    return data


def load_config(path: Path, cache: Path | None = None) -> Config:
    """Load hermitcrab.yaml, including checks that span keys (an agent's model must exist).

    With `cache`, the parsed file is memoised there as JSON, keyed by the text's hash: the
    daemon's start then skips the YAML parser (its import is a tenth of the start-up time).
    The same plain data is validated either way; a fault is reported from a fresh parse,
    which knows the lines."""
    if cache is not None:
        config = _load_cached(path, cache)
        if config is not None:
            return config
    data = parse_yaml(path)
    config = load_yaml_model(path, Config, data)
    problems = config.reference_problems()
    if problems:
        raise ConfigError(
            "\n".join(f"{path}:{_line_of(data, loc)}: {msg}. fix: {fix}" for loc, msg, fix in problems)
        )
    if cache is not None:
        _save_cache(cache, path, data)
    return config


def _digest(text: bytes) -> str:
    import hashlib

    return hashlib.sha256(text).hexdigest()


def _load_cached(path: Path, cache: Path) -> Config | None:
    """The config from the memo, if it was made from exactly this text and still validates
    cleanly; None (parse afresh) for anything else, a fault included."""
    import json

    try:
        text = path.read_bytes()
        memo = json.loads(cache.read_bytes())
        if not isinstance(memo, dict) or memo.get("sha256") != _digest(text):
            return None
        config = Config.model_validate(memo["data"])
    except (OSError, ValueError, KeyError, TypeError, ValidationError):
        return None
    return None if config.reference_problems() else config


def _save_cache(cache: Path, path: Path, data: Any) -> None:
    """Write the memo (0600, atomically), only when JSON holds the data exactly."""
    import json
    import os

    plain = _json_plain(data)
    if plain is _NOT_JSON:
        return
    try:
        text = path.read_bytes()
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"sha256": _digest(text), "data": plain}, handle)
        os.replace(tmp, cache)
    except OSError:
        pass  # only a memo: the next start parses the file again


_NOT_JSON = object()


def _json_plain(data: Any) -> Any:
    """`data` as builtin JSON types (the parser's own str/int/float subclasses made plain),
    or _NOT_JSON if it holds anything JSON would change (a date, a set, binary)."""
    if data is None or type(data) is bool:
        return data
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            plain = _json_plain(value)
            if plain is _NOT_JSON:
                return _NOT_JSON
            out[str(key)] = plain
        return out
    if isinstance(data, list):
        items = [_json_plain(v) for v in data]
        return _NOT_JSON if any(i is _NOT_JSON for i in items) else items
    for kind in (str, int, float):
        if isinstance(data, kind) and not isinstance(data, bool):
            return kind(data)
    return _NOT_JSON
