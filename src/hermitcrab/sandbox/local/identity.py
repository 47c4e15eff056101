"""Who a sandbox's processes are on the host.

Inside, commands run as process.run_as_uid (1000 by default). On the host they are another
uid, and whoever owns that uid owns the sandboxes' user namespaces: it could enter a
running command (setns) and use its door and its injected credentials. So:

- a normal user's gateway maps the sandbox user to that user's own uid: the only account
  that owns its namespaces is the owner's;
- a root gateway runs them as HOST_UID, a uid reserved for HermitCrab that no host account
  (nor any user's subordinate uid range) may have; `doctor` checks that it has none.
"""

from __future__ import annotations

import contextlib
import os
import pwd
from pathlib import Path

from hermitcrab.policy.schema import Policy

HOST_UID = 2_000_000  # reserved for HermitCrab's sandboxes on a root gateway


def host_uid(policy: Policy) -> int:
    if policy.process.host_uid is not None:
        return policy.process.host_uid
    return HOST_UID if os.geteuid() == 0 else os.getuid()


def host_account(uid: int) -> str | None:
    """The host account that has `uid`, as a user or in its subordinate uid range; None
    when no one has it."""
    with contextlib.suppress(KeyError):
        return f"the host user {pwd.getpwuid(uid).pw_name!r}"
    for table in ("/etc/subuid", "/etc/subgid"):
        with contextlib.suppress(OSError, ValueError):
            for line in Path(table).read_text().splitlines():
                parts = line.strip().split(":")
                if len(parts) == 3 and int(parts[1]) <= uid < int(parts[1]) + int(parts[2]):
                    return f"the subordinate range of {parts[0]!r} in {table}"
    return None


def warning(policy: Policy) -> str | None:
    """What a person must know about the sandbox's host uid, or None."""
    uid = host_uid(policy)
    if os.geteuid() != 0 and policy.process.host_uid is None:
        return None  # our own uid: we own the namespaces anyway
    owner = host_account(uid)
    if owner is None:
        return None
    return (
        f"sandboxes run as host uid {uid}, which belongs to {owner}: that account could enter "
        "running sandboxes and use their credentials. fix: leave process.host_uid unset "
        f"(a root gateway then uses the reserved uid {HOST_UID}), or pick a uid no one has"
    )
