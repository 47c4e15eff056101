"""Arguments a tool's input schema accepts, made up from the schema alone: its defaults,
then its examples, enums and constants, then a plain value of each required property's
type. What `hermitcrab mcp probe` calls a server's tools with."""

from __future__ import annotations

from typing import Any

PLAIN: dict[str, Any] = {"string": "hermitcrab", "number": 1, "integer": 1, "boolean": True, "null": None}
MAX_DEPTH = 5


def example_arguments(schema: dict[str, Any] | None) -> dict[str, Any]:
    value = example_value(schema or {"type": "object"}, 0)
    return value if isinstance(value, dict) else {}


def example_value(schema: Any, depth: int) -> Any:
    if not isinstance(schema, dict):
        return None
    for key in ("default", "const"):
        if key in schema:
            return schema[key]
    for key in ("examples", "enum"):
        if isinstance(schema.get(key), list) and schema[key]:
            return schema[key][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return example_value(schema[key][0], depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        if depth >= MAX_DEPTH:
            return {}
        properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        required = [r for r in schema.get("required", []) if isinstance(r, str)]
        out = {}
        for name, sub in properties.items():
            if name in required or (isinstance(sub, dict) and "default" in sub):
                out[name] = example_value(sub, depth + 1)
        for name in required:
            out.setdefault(name, "hermitcrab")
        return out
    if kind == "array":
        minimum = schema.get("minItems", 0)
        item = example_value(schema.get("items", {}), depth + 1) if depth < MAX_DEPTH else None
        return [item] * int(minimum) if isinstance(minimum, int) and minimum > 0 else []
    if kind in ("number", "integer"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        if isinstance(low, int | float):
            return low + 1 if "exclusiveMinimum" in schema and "minimum" not in schema else low
        return PLAIN[kind]
    if kind == "string":
        length = schema.get("minLength")
        return "h" * length if isinstance(length, int) and length > len(PLAIN["string"]) else PLAIN["string"]
    return PLAIN.get(str(kind))


def elicited(schema: Any) -> dict[str, Any] | None:
    """An elicitation form's answer from its defaults alone; None when a required field
    has no default (nobody is there to fill it in). `schema`: as the SDK hands it over (a
    model or a plain mapping)."""
    if hasattr(schema, "model_dump"):
        schema = schema.model_dump(by_alias=True, exclude_none=True)
    schema = dict(schema or {})
    properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    required = set(schema.get("required") or [])
    answer = {}
    for name, sub in properties.items():
        if isinstance(sub, dict) and "default" in sub:
            answer[name] = sub["default"]
        elif name in required:
            return None
    return answer
