"""Where the launcher re-mounts the folders bwrap binds, when the gateway runs as root
(see launcher.py for why)."""

from __future__ import annotations

import os

STAGE_ROOT = "/run"


def stage_paths(sources: list[str]) -> dict[str, str]:
    """Where each host path will appear for bwrap."""
    return {src: f"{STAGE_ROOT}/hermitcrab-{i}" for i, src in enumerate(dict.fromkeys(sources))}


def stage_items(staged: dict[str, str]) -> list[list[object]]:
    """The launcher's "stage" list: [source, where, is a folder]."""
    return [[src, dst, os.path.isdir(src)] for src, dst in staged.items()]
