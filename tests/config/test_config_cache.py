"""The daemon's parsed-config memo: a quicker start, never a different config."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from hermitcrab.config import load_config
from hermitcrab.errors import ConfigError

GOOD = "version: 1\ngateway:\n  port: 18123\n  host: 127.0.0.1\n"


def files(tmp_path: Path, text: str = GOOD) -> tuple[Path, Path]:
    path = tmp_path / "hermitcrab.yaml"
    path.write_text(text)
    return path, tmp_path / ".hermitcrab.yaml.json"


def test_the_memo_gives_the_same_config_without_parsing_yaml(tmp_path: Path, monkeypatch) -> None:
    path, cache = files(tmp_path)
    fresh = load_config(path, cache=cache)
    assert cache.stat().st_mode & 0o777 == 0o600
    import hermitcrab.config.loader as loader

    monkeypatch.setattr(loader, "parse_yaml", lambda p: pytest.fail("parsed YAML although the memo holds"))
    assert load_config(path, cache=cache) == fresh


def test_an_edited_file_is_parsed_again(tmp_path: Path) -> None:
    path, cache = files(tmp_path)
    load_config(path, cache=cache)
    path.write_text(GOOD.replace("18123", "18124"))
    assert load_config(path, cache=cache).gateway.port == 18124
    assert json.loads(cache.read_text())["data"]["gateway"]["port"] == 18124


def test_a_broken_edit_is_reported_with_its_line_whatever_the_memo_holds(tmp_path: Path) -> None:
    path, cache = files(tmp_path)
    load_config(path, cache=cache)
    path.write_text("version: 1\ngateway:\n  prot: 1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, cache=cache)
    assert f"{path}:3: gateway.prot: unknown key" in str(caught.value)


def test_a_forged_or_garbled_memo_is_ignored(tmp_path: Path) -> None:
    path, cache = files(tmp_path)
    load_config(path, cache=cache)
    memo = json.loads(cache.read_text())
    memo["data"]["gateway"]["port"] = "not a port"  # the hash still matches, the data is bad
    cache.write_text(json.dumps(memo))
    assert load_config(path, cache=cache).gateway.port == 18123  # invalid memo: parsed afresh
    cache.write_text("{not json")
    assert load_config(path, cache=cache).gateway.port == 18123


def test_data_json_would_change_is_not_memoised() -> None:
    from hermitcrab.config.loader import _NOT_JSON, _json_plain

    # A YAML timestamp parses to a date, which JSON cannot hold as it is.

    assert _json_plain({"when": __import__("datetime").date(2026, 11, 29)}) is _NOT_JSON
    assert _json_plain({"n": 1, "x": [1.5, True, None, "s"]}) == {"n": 1, "x": [1.5, True, None, "s"]}


def test_the_daemon_start_does_not_import_the_yaml_parser_once_memoised(tmp_path: Path) -> None:
    import subprocess

    path, cache = files(tmp_path)
    load_config(path, cache=cache)
    probe = (
        "import sys; from pathlib import Path; from hermitcrab.config.loader import load_config; "
        f"load_config(Path({str(path)!r}), cache=Path({str(cache)!r})); "
        "print('ruamel.yaml' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
