"""A broken config or policy is refused with file, line, key, expectation and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from hermitcrab.config import load_config
from hermitcrab.errors import ConfigError
from hermitcrab.policy import load_policy


def write(tmp_path: Path, text: str, name: str = "hermitcrab.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(loader, path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        loader(path)
    return str(caught.value)


def test_typo_in_a_key_names_line_and_suggests_the_right_key(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\ngateway:\n  prot: 18790\n")
    message = error_of(load_config, path)
    assert f"{path}:3:" in message
    assert "gateway.prot" in message and "unknown key" in message
    assert "did you mean 'port'" in message


def test_wrong_type_says_what_was_expected_and_what_was_given(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\ngateway:\n  host: 127.0.0.1\n  port: lots\n")
    message = error_of(load_config, path)
    assert f"{path}:4:" in message
    assert "gateway.port" in message
    assert "valid integer" in message and "'lots'" in message


def test_out_of_range_value(tmp_path: Path) -> None:
    message = error_of(load_config, write(tmp_path, "version: 1\ngateway:\n  port: 99999\n"))
    assert "less than or equal to 65535" in message and "99999" in message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = "version: 1\ngateway:\n  prot: 1\nmodels:\n  m:\n    provider: openai\n    model: x\n"
    message = error_of(load_config, write(tmp_path, text))
    assert "gateway.prot" in message
    assert "models.m.base_url" in message and "Field required" in message
    assert message.count("\n") == 1  # two problems, two lines


def test_unknown_provider_lists_the_known_ones(tmp_path: Path) -> None:
    message = error_of(load_config, write(tmp_path, "version: 1\nmodels:\n  m:\n    provider: gpt\n"))
    assert ":4:" in message
    assert "'llama_cpp', 'openai', 'anthropic', 'scripted'" in message


def test_agent_pointing_at_a_missing_model(tmp_path: Path) -> None:
    text = "version: 1\nagents:\n  main:\n    model: nope\n"
    message = error_of(load_config, write(tmp_path, text))
    assert ":4:" in message and "model 'nope'" in message and "embedded" in message


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\ngateway:\n  port: [1, 2\n")
    message = error_of(load_config, path)
    assert "YAML syntax error" in message and f"{path}:" in message


def test_missing_version_and_wrong_top_level(tmp_path: Path) -> None:
    assert "version" in error_of(load_config, write(tmp_path, "gateway: {}\n"))
    assert "expected a mapping" in error_of(load_config, write(tmp_path, "- a\n- b\n"))


def test_missing_file_says_how_to_create_it(tmp_path: Path) -> None:
    assert "hermitcrab onboard" in error_of(load_config, tmp_path / "absent.yaml")


def test_defaults_fill_sections_left_out(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "version: 1\n"))
    assert config.gateway.host == "127.0.0.1" and config.gateway.port == 18790
    assert config.agents["main"].model == "embedded"


def test_policy_root_never_writable(tmp_path: Path) -> None:
    text = "version: 1\nfilesystem:\n  read_write: [/]\n"
    message = error_of(load_policy, write(tmp_path, text, "policy.yaml"))
    assert "policy.yaml:3:" in message and "'/' can never be writable" in message


def test_policy_relative_path_and_root_uid(tmp_path: Path) -> None:
    text = "version: 1\nfilesystem:\n  read_only: [usr]\nprocess:\n  run_as_uid: 0\n"
    message = error_of(load_policy, write(tmp_path, text, "policy.yaml"))
    assert "must be absolute" in message
    assert "process.run_as_uid" in message and ":5:" in message


def test_policy_typo_in_section(tmp_path: Path) -> None:
    message = error_of(load_policy, write(tmp_path, "version: 1\nproces:\n  max_processes: 3\n", "p.yaml"))
    assert "did you mean 'process'" in message


def test_onboard_templates_are_valid(tmp_path: Path) -> None:
    from importlib import resources

    templates = resources.files("hermitcrab.config").joinpath("templates")
    config = load_config(write(tmp_path, templates.joinpath("hermitcrab.yaml").read_text()))
    policy = load_policy(write(tmp_path, templates.joinpath("policy.yaml").read_text(), "policy.yaml"))
    assert config.models["embedded"].provider == "llama_cpp"
    assert policy.process.run_as_uid != 0


def test_an_unknown_time_zone_is_named_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nscheduler:\n  timezone: Mars/Olympus\n")
    message = error_of(load_config, path)
    assert f"{path}:3:" in message and "scheduler.timezone" in message and "unknown time zone" in message
