"""Edit a policy file's text without losing its comments (ruamel round-trip)."""

from __future__ import annotations

import io
from typing import Any


def _yaml() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)  # the layout our templates and docs use
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a line: an entry like `exec=echo one` must stay whole to the eye
    return yaml


def _dump(yaml: Any, data: Any) -> str:
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def add_tool_allow(text: str, entry: str) -> str:
    """The policy text with `entry` (a tool, or `tool:prefix`) in tools.allow, once. A whole
    tool leaves tools.ask too (ask would beat it); `exec:PREFIX` beats an ask for exec."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    yaml = _yaml()
    data = yaml.load(text) or CommentedMap()
    tools = data.setdefault("tools", CommentedMap())
    allow = tools.get("allow")
    if allow is None:
        allow = tools["allow"] = CommentedSeq()
        allow.fa.set_flow_style()
    if entry not in allow:
        allow.append(entry)
    asked = tools.get("ask")
    if asked is not None and entry in asked:
        asked.remove(entry)
    return _dump(yaml, data)


def add_network_rule(text: str, rule: dict[str, Any]) -> str:
    """The policy text with `rule` appended to network.rules (replacing a rule of that name)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    yaml = _yaml()
    data = yaml.load(text) or CommentedMap()
    network = data.setdefault("network", CommentedMap())
    rules = network.get("rules")
    if rules is None:
        rules = network["rules"] = CommentedSeq()
    for index, existing in enumerate(list(rules)):
        if isinstance(existing, dict) and existing.get("name") == rule["name"]:
            del rules[index]
    item = CommentedMap()
    for key, value in rule.items():
        if isinstance(value, list):
            seq = CommentedSeq(value)
            seq.fa.set_flow_style()
            item[key] = seq
        else:
            item[key] = value
    rules.append(item)
    return _dump(yaml, data)
