"""The policy file's shape (version 1). Sections left out keep their defaults."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


DEFAULT_READ_ONLY = ["/usr", "/bin", "/lib", "/lib64", "/sbin", "/etc/alternatives", "/etc/ssl"]


class FilesystemPolicy(_Strict):
    read_only: list[str] = Field(default_factory=lambda: list(DEFAULT_READ_ONLY))
    read_write: list[str] = Field(default_factory=list)
    # The agent's workspace, bound read-write; empty means the agent's configured workspace.
    workspace: str | None = None
    landlock: Literal["required", "best_effort"] = "required"
    tmp_size_mb: int = Field(256, ge=1, le=1024 * 1024)  # the private /tmp is a tmpfs this big

    @field_validator("read_only", "read_write")
    @classmethod
    def _absolute(cls, paths: list[str]) -> list[str]:
        for path in paths:
            if not path.startswith("/"):
                raise ValueError(f"path {path!r} must be absolute (start with '/')")
            if ".." in path.split("/"):
                raise ValueError(f"path {path!r} must not contain '..'")
        return paths

    @field_validator("read_write")
    @classmethod
    def _root_never_writable(cls, paths: list[str]) -> list[str]:
        if any(p.rstrip("/") == "" for p in paths):
            raise ValueError("'/' can never be writable; list the folders that must be")
        return paths


class ProcessPolicy(_Strict):
    max_processes: int = Field(64, ge=1, le=4096)
    max_memory_mb: int = Field(1024, ge=16, le=1024 * 1024)
    max_file_size_mb: int = Field(256, ge=1, le=1024 * 1024)
    max_open_files: int = Field(256, ge=16, le=65536)
    cpu_seconds: int = Field(60, ge=1)
    timeout_seconds: float = Field(60.0, gt=0)
    run_as_uid: int = Field(1000, ge=1, description="never 0: commands never run as root")
    # Output captured per command; the rest goes to a file in the workspace.
    max_output_bytes: int = Field(64 * 1024, ge=1024, le=64 * 1024 * 1024)


class NetworkPolicy(_Strict):
    # No network at all until egress rules exist: deny by construction.
    default: Literal["deny"] = "deny"


class ToolsPolicy(_Strict):
    allow: list[str] = Field(default_factory=lambda: ["exec", "read_file", "write_file"])
    ask: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)


class Policy(_Strict):
    version: Literal[1]
    filesystem: FilesystemPolicy = Field(default_factory=FilesystemPolicy)
    process: ProcessPolicy = Field(default_factory=ProcessPolicy)
    network: NetworkPolicy = Field(default_factory=NetworkPolicy)
    tools: ToolsPolicy = Field(default_factory=ToolsPolicy)
