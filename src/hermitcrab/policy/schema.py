"""The policy file's shape (version 1). Sections left out keep their defaults."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


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
    # The workspace's total size. best_effort: measured while commands run, and a command
    # that grows it past the cap is killed; required: a size-capped filesystem (ENOSPC).
    workspace_max_mb: int = Field(4096, ge=1, le=1024 * 1024 * 1024)
    workspace_quota: Literal["required", "best_effort"] = "best_effort"

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
    # Each process's address space (RLIMIT_AS), and all the sandbox's commands together
    # (a memory cgroup, which counts shared memory and memfds too).
    max_memory_mb: int = Field(1024, ge=16, le=1024 * 1024)
    # Each process's address space (RLIMIT_AS) when it should differ from max_memory_mb:
    # Node (most MCP servers) and Go reserve gigabytes they never touch, and abort under a
    # tight one. Raise it only where a memory cgroup (memory: required) caps real use.
    address_space_mb: int | None = Field(None, ge=16, le=1024 * 1024 * 1024)
    # required: no sandbox starts without a memory cgroup to hold max_memory_mb.
    memory: Literal["required", "best_effort"] = "best_effort"
    # false: whatever a command leaves running dies when the command ends.
    background_processes: bool = False
    max_file_size_mb: int = Field(256, ge=1, le=1024 * 1024)
    max_open_files: int = Field(256, ge=16, le=65536)
    cpu_seconds: int = Field(60, ge=1)
    timeout_seconds: float = Field(60.0, gt=0)
    run_as_uid: int = Field(1000, ge=1, description="never 0: commands never run as root")
    # Who commands are on the host. Unset: the gateway's own uid, or for a root gateway a
    # uid reserved for HermitCrab that no host account has (see sandbox/local/identity.py).
    host_uid: int | None = Field(None, ge=1)
    # Output captured per command; the rest goes to a file in the workspace.
    max_output_bytes: int = Field(64 * 1024, ge=1024, le=64 * 1024 * 1024)


Access = Literal["allow", "ask", "deny"]


class HttpRule(_Strict):
    """An L7 rule, for endpoints whose TLS the proxy terminates (or plain HTTP)."""

    methods: list[str] = Field(default_factory=lambda: ["*"])
    paths: list[str] = Field(default_factory=lambda: ["/**"])
    query: dict[str, str] = Field(default_factory=dict)  # each key must match (glob on the value)

    @field_validator("methods")
    @classmethod
    def _methods(cls, methods: list[str]) -> list[str]:
        return [m.upper() for m in methods]

    @field_validator("paths")
    @classmethod
    def _paths(cls, paths: list[str]) -> list[str]:
        for path in paths:
            if not path.startswith("/"):
                raise ValueError(f"path pattern {path!r} must start with '/'")
        return paths


class NetworkRule(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    hosts: list[str] = Field(min_length=1)
    ports: list[int] = Field(default_factory=lambda: [443])
    access: Access = "allow"
    # Addresses the proxy refuses by default (loopback, private, link-local, metadata)
    # that this rule may still reach.
    allowed_ips: list[str] = Field(default_factory=list)
    tls: Literal["passthrough", "terminate"] = "passthrough"
    credentials: str | None = None  # the name of a secret the proxy injects (terminated TLS only)
    allow: list[HttpRule] = Field(default_factory=list)
    deny: list[HttpRule] = Field(default_factory=list)

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, hosts: list[str]) -> list[str]:
        out = []
        for host in hosts:
            host = host.strip().lower().rstrip(".")
            labels = host.split(".")
            if not host or any(not label for label in labels):
                raise ValueError(f"host {host!r} is not a host name")
            if "*" in host and (labels[0] != "*" or "*" in ".".join(labels[1:]) or len(labels) < 3):
                raise ValueError(
                    f"host {host!r}: a wildcard may only be the whole first label of a name with "
                    "at least two more labels, as in '*.example.org'"
                )
            out.append(host)
        return out

    @field_validator("ports")
    @classmethod
    def _ports(cls, ports: list[int]) -> list[int]:
        for port in ports:
            if not 1 <= port <= 65535:
                raise ValueError(f"port {port} is not between 1 and 65535")
        return ports

    @field_validator("allowed_ips")
    @classmethod
    def _ips(cls, ips: list[str]) -> list[str]:
        import ipaddress

        for ip in ips:
            try:
                ipaddress.ip_network(ip, strict=False)
            except ValueError:
                raise ValueError(f"allowed_ips entry {ip!r} is not an IP address or network") from None
        return ips

    @model_validator(mode="after")
    def _credentials_need_termination(self) -> NetworkRule:
        if self.credentials and self.tls != "terminate":
            raise ValueError(
                f"rule '{self.name}': credentials are injected only where the proxy sees the request; "
                "set tls: terminate"
            )
        return self


class NetworkPolicy(_Strict):
    # With no rule, no network at all: deny by construction.
    default: Literal["deny", "ask"] = "deny"
    rules: list[NetworkRule] = Field(default_factory=list)
    approval_timeout_seconds: float = Field(120.0, gt=0, le=86400)
    # Open at once through the door; more are refused (503) until some close.
    max_connections: int = Field(128, ge=1, le=1024)

    @model_validator(mode="after")
    def _unique_names(self) -> NetworkPolicy:
        names = [r.name for r in self.rules]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(duplicates)}")
        return self


DEFAULT_TOOLS = ["exec", "read_file", "write_file", "edit_file", "list_files", "web_fetch", "send_message",
                 "schedule", "skill", "memory_search", "memory_write"]  # fmt: skip


class ToolsPolicy(_Strict):
    """Which tools run (allow), wait for a person (ask) or never run (deny). An entry is a
    tool's name, '*', `tool:prefix` (exec whose command begins with those words), or
    `SERVER__*` (every tool of one MCP server)."""

    allow: list[str] = Field(default_factory=lambda: list(DEFAULT_TOOLS))
    ask: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)
    approval_timeout_seconds: float = Field(300.0, gt=0, le=86400)  # a held call is denied after this


class Policy(_Strict):
    version: Literal[1]
    filesystem: FilesystemPolicy = Field(default_factory=FilesystemPolicy)
    process: ProcessPolicy = Field(default_factory=ProcessPolicy)
    network: NetworkPolicy = Field(default_factory=NetworkPolicy)
    tools: ToolsPolicy = Field(default_factory=ToolsPolicy)
