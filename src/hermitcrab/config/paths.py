"""Where HermitCrab keeps its files: everything lives under $HERMITCRAB_HOME."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "HERMITCRAB_HOME"
WORKSPACE_FILES = ("AGENTS.md", "SOUL.md", "USER.md", "MEMORY.md")


@dataclass(frozen=True)
class Paths:
    home: Path

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Paths:
        env = os.environ if environ is None else environ
        raw = env.get(HOME_ENV) or str(Path.home() / ".hermitcrab")
        return cls(Path(raw).expanduser().absolute())

    @property
    def config(self) -> Path:
        return self.home / "hermitcrab.yaml"

    @property
    def config_cache(self) -> Path:
        """hermitcrab.yaml as parsed, memoised for a quicker start (config.loader)."""
        return self.home / ".hermitcrab.yaml.json"

    @property
    def token(self) -> Path:
        return self.home / "gateway.token"

    @property
    def secrets(self) -> Path:
        """Credentials for the egress proxy (0600); never mounted into a sandbox."""
        return self.home / "secrets.json"

    @property
    def policy(self) -> Path:
        return self.home / "policy.yaml"

    @property
    def state_db(self) -> Path:
        return self.home / "state.db"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def gateway_log(self) -> Path:
        return self.logs / "gateway.log"

    @property
    def pidfile(self) -> Path:
        return self.home / "gateway.pid"

    @property
    def crashes(self) -> Path:
        """Recent unclean ends of the gateway, so that a crash loop stops (gateway.crashes)."""
        return self.home / "gateway.crashes.json"

    @property
    def sandboxes(self) -> Path:
        """Sandbox state (control sockets, generated /etc files): kept short for socket paths."""
        return self.home / "sbx"

    @property
    def sandbox_workspaces(self) -> Path:
        return self.home / "sandboxes"

    @property
    def skills(self) -> Path:
        """Skills a person installed (`hermitcrab skills install`), hash pinned."""
        return self.home / "skills"

    @property
    def workspace(self) -> Path:
        return self.home / "workspace"

    def read_token(self) -> str:
        return self.token.read_text().strip()
