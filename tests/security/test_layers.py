"""Each layer alone. `Layers` switches single layers off; with the others gone, the layer
under test must still stop its attacks. Each section also has a control: the same attack
with that layer off as well must work (or fail differently), which shows that it is this
layer, and not another one or plain file permissions, that stops it."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from textwrap import dedent

import pytest

from hermitcrab.errors import SandboxError
from hermitcrab.sandbox.base import Layers
from hermitcrab.sandbox.local.driver import LocalSandbox

from .conftest import (
    FORK_BOMB,
    HOST_SECRET_ENV,
    SMALL_PROCESS,
    Attack,
    Bait,
    Lab,
    assert_blocked,
    assert_escaped,
    cases,
    describe,
    verdict,
)


def sandbox(lab: Lab, layers: Layers, name: str) -> Iterator[LocalSandbox]:
    try:
        box = lab.create(layers=layers, name=name)
    except SandboxError as exc:
        error = str(exc)
    else:
        error = ""
    if error:
        pytest.fail(f"cannot start a sandbox with {layers}, so it cannot test a layer alone: {error}")
    yield box
    if box in lab.live:
        lab.destroy(box)


@pytest.fixture(scope="module")
def landlock_only(lab: Lab) -> Iterator[LocalSandbox]:
    """binds off: the whole host is bound read-only. Landlock is the only filesystem layer."""
    yield from sandbox(lab, Layers(binds=False), "landlock-only")


@pytest.fixture(scope="module")
def host_exposed(lab: Lab) -> Iterator[LocalSandbox]:
    """Control: binds and Landlock both off."""
    yield from sandbox(lab, Layers(binds=False, landlock=False), "host-exposed")


@pytest.fixture(scope="module")
def rw_dir() -> Iterator[Path]:
    """A host folder any uid may write to: a bind mistake would expose it read-write."""
    folder = Path(tempfile.mkdtemp(prefix="hcrw", dir="/var/tmp"))
    folder.chmod(0o777)
    (folder / "existing").write_text("host data\n")
    (folder / "existing").chmod(0o666)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def seccomp_only(lab: Lab) -> Iterator[LocalSandbox]:
    yield from sandbox(lab, Layers(landlock=False), "seccomp-only")


@pytest.fixture(scope="module")
def bare(lab: Lab) -> Iterator[LocalSandbox]:
    """Landlock and seccomp off: namespaces, binds, dropped capabilities and rlimits remain."""
    yield from sandbox(lab, Layers(landlock=False, seccomp=False), "bare")


@pytest.fixture(scope="module")
def unlimited(lab: Lab) -> Iterator[LocalSandbox]:
    """Control for the rlimits: Landlock, seccomp, rlimits and cgroups off; only the timeout is left."""
    yield from sandbox(lab, Layers(landlock=False, seccomp=False, rlimits=False, cgroups=False), "unlimited")


# --- Landlock alone: the host's whole filesystem is there, read-only.

LANDLOCK_READS = [
    Attack("read-ssh-key", "landlock", "attempt('read the key', lambda: read(ARGS['ssh_key']))", ("EACCES",)),
    Attack("read-gateway-token", "landlock", "attempt('read', lambda: read(ARGS['token']))", ("EACCES",)),
    Attack("read-state-db", "landlock", "attempt('read', lambda: read(ARGS['state_db']))", ("EACCES",)),
    Attack(
        "list-hermitcrab-home", "landlock", "attempt('ls', lambda: os.listdir(ARGS['home']))", ("EACCES",)
    ),
    Attack("read-etc-shadow", "landlock", "attempt('read', lambda: read('/etc/shadow'))", ("EACCES",)),
    Attack("read-etc-hostname", "landlock", "attempt('read', lambda: read('/etc/hostname'))", ("EACCES",)),
    Attack("list-host-root", "landlock", "attempt('ls /', lambda: os.listdir('/'))", ("EACCES",)),
]


@cases(*LANDLOCK_READS)
def test_landlock_alone_hides_host_files(lab: Lab, landlock_only, attack: Attack) -> None:
    lab.attack(landlock_only, attack)


def test_landlock_alone_control(lab: Lab, host_exposed, bait: Bait) -> None:
    """Without Landlock, the same sandbox reads the bait: file permissions did not stop it."""
    result = lab.py(host_exposed, "attempt('read the key', lambda: read(ARGS['ssh_key']))")
    assert_escaped(result, "reading the world-readable key with binds and Landlock off")
    assert bait.secret in result.stdout.decode()


@cases(*LANDLOCK_READS[:4])
def test_landlock_alone_hides_an_unlisted_bind(lab: Lab, fresh, bait: Bait, attack: Attack) -> None:
    """The bait folder itself bound by mistake (and left out of the Landlock rules): the
    files are there, readable by file permissions, and Landlock alone refuses them."""
    box = fresh(layers=Layers(unlisted_rw_binds=(str(bait.root),)))
    lab.attack(box, attack)


def test_landlock_alone_unlisted_bind_control(lab: Lab, fresh, bait: Bait) -> None:
    box = fresh(layers=Layers(landlock=False, unlisted_rw_binds=(str(bait.root),)))
    result = lab.py(box, "attempt('read the token', lambda: read(ARGS['token']))")
    assert_escaped(result, "reading the token through the mistaken bind with Landlock off")
    assert bait.secret in result.stdout.decode()


LANDLOCK_WRITES = [
    Attack(
        "create-file", "landlock", "attempt('create', lambda: write(ARGS['rw'] + '/planted'))", ("EACCES",)
    ),
    Attack(
        "overwrite-file",
        "landlock",
        "attempt('overwrite', lambda: write(ARGS['rw'] + '/existing', b'pwned', 'r+b'))",
        ("EACCES",),
    ),
    Attack(
        "truncate-file",
        "landlock",
        "attempt('truncate', lambda: os.truncate(ARGS['rw'] + '/existing', 0))",
        ("EACCES",),
    ),
    Attack(
        "mkdir", "landlock", "attempt('mkdir', lambda: os.mkdir(ARGS['rw'] + '/planted-dir'))", ("EACCES",)
    ),
    Attack(
        "symlink",
        "landlock",
        "attempt('symlink', lambda: os.symlink('/etc/shadow', ARGS['rw'] + '/planted-link'))",
        ("EACCES",),
    ),
    Attack(
        "unlink", "landlock", "attempt('unlink', lambda: os.unlink(ARGS['rw'] + '/existing'))", ("EACCES",)
    ),
    Attack("read", "landlock", "attempt('read', lambda: read(ARGS['rw'] + '/existing'))", ("EACCES",)),
]


@cases(*LANDLOCK_WRITES)
def test_landlock_alone_blocks_an_unlisted_read_write_bind(
    lab: Lab, fresh, rw_dir: Path, attack: Attack
) -> None:
    box = fresh(layers=Layers(unlisted_rw_binds=(str(rw_dir),)))
    lab.attack(box, attack, args={"rw": str(rw_dir)})
    assert sorted(p.name for p in rw_dir.iterdir()) == ["existing"], (
        "ESCAPE: something was planted on the host"
    )
    assert (rw_dir / "existing").read_text() == "host data\n", "ESCAPE: the host file was changed"


def test_landlock_alone_rw_control(lab: Lab, fresh, rw_dir: Path) -> None:
    """Without Landlock, the same bind mistake lets the sandbox write on the host."""
    box = fresh(layers=Layers(landlock=False, unlisted_rw_binds=(str(rw_dir),)))
    result = lab.py(
        box, "attempt('create', lambda: write(ARGS['rw'] + '/control'))", args={"rw": str(rw_dir)}
    )
    assert_escaped(result, "writing through the unlisted read-write bind with Landlock off")
    assert (rw_dir / "control").read_bytes() == b"pwned"
    (rw_dir / "control").unlink()


# --- Seccomp alone: Landlock off. Each attack also runs with seccomp off (the control),
# where it must work or at least fail another way.

SECCOMP_ALONE = [
    Attack("ptrace-traceme", "seccomp", "attempt('TRACEME', lambda: syscall(101, 0, 0, 0, 0))", ("EPERM",)),
    Attack(
        "ptrace-attach-sibling",
        "seccomp",
        """
        child = subprocess.Popen(['sleep', '30'])
        attempt('PTRACE_ATTACH', lambda: syscall(101, 16, child.pid, 0, 0))
        """,
        ("EPERM",),
    ),
    # The victims are siblings the probe forks (same uid, dumpable): the supervisor is not
    # dumpable, which would refuse these calls even without seccomp.
    Attack(
        "process-vm-readv-sibling",
        "seccomp",
        """
        secret = ctypes.create_string_buffer(b'sibling-secret', 16)
        child = sibling()  # forked: the buffer is at the same address in it
        buf = ctypes.create_string_buffer(16)
        local = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 16)
        remote = (ctypes.c_void_p * 2)(ctypes.addressof(secret), 16)
        attempt('process_vm_readv', lambda: (syscall(310, child, local, 1, remote, 1, 0), buf.raw))
        """,
        ("EPERM",),
    ),
    Attack(
        "pidfd-getfd-sibling",
        "seccomp",
        """
        pidfd = syscall(434, sibling(), 0)  # pidfd_open
        attempt('pidfd_getfd', lambda: syscall(438, pidfd, 1, 0))
        """,
        ("EPERM",),
    ),
    Attack("keyctl", "seccomp", "attempt('keyctl', lambda: syscall(250, 0, -3, 1))", ("EPERM",)),
    Attack(
        "add-key",
        "seccomp",
        "attempt('add_key', lambda: syscall(248, b'user', b'hc', b'x', 1, -2))",
        ("EPERM",),
    ),
    Attack(
        "io-uring-setup",
        "seccomp",
        "attempt('io_uring_setup', lambda: syscall(425, 8, ctypes.create_string_buffer(120)))",
        ("EPERM",),
    ),
    Attack("userfaultfd", "seccomp", "attempt('userfaultfd', lambda: syscall(323, 1))", ("EPERM",)),
    Attack(
        "perf-event-open",
        "seccomp",
        """
        attr = ctypes.create_string_buffer(128)
        struct.pack_into('IIQ', attr, 0, 1, 128, 0)
        struct.pack_into('Q', attr, 40, 1 << 5 | 1 << 6)
        attempt('perf_event_open', lambda: syscall(298, attr, 0, -1, -1, 0))
        """,
        ("EPERM",),
    ),
    Attack("personality", "seccomp", "attempt('personality', lambda: syscall(135, 0x0040000))", ("EPERM",)),
    Attack(
        "name-to-handle-at",
        "seccomp",
        """
        handle = ctypes.create_string_buffer(struct.pack('Ii', 128, 0) + bytes(128))
        mount_id = ctypes.c_int()
        where = ctypes.byref(mount_id)
        attempt('name_to_handle_at', lambda: syscall(303, -100, b'/workspace', handle, where, 0))
        """,
        ("EPERM",),
    ),
    Attack("unshare-user", "seccomp", "attempt('unshare', lambda: syscall(272, 0x10000000))", ("EPERM",)),
    Attack(
        "clone-newuser",
        "seccomp",
        "attempt('clone(CLONE_NEWUSER)', lambda: syscall(56, 0x10000000 | 17, 0, 0, 0, 0))",
        ("EPERM",),
    ),
    Attack(
        "tiocsti-own-pty",
        "seccomp",
        """
        import fcntl, termios
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        attempt('TIOCSTI', lambda: fcntl.ioctl(slave, termios.TIOCSTI, b'x'))
        """,
        ("EPERM",),
    ),
    Attack(
        "tiocsti-stdout",
        "seccomp",
        "import fcntl, termios\nattempt('TIOCSTI fd 1', lambda: fcntl.ioctl(1, termios.TIOCSTI, b'x'))",
        ("EPERM",),
    ),
    Attack(
        "netlink-route",
        "seccomp",
        "attempt('netlink', lambda: socket.socket(16, socket.SOCK_DGRAM, 0))",
        ("EAFNOSUPPORT",),
    ),
    Attack(
        "af-packet",
        "seccomp",
        "attempt('AF_PACKET', lambda: socket.socket(17, socket.SOCK_DGRAM, 0x0300))",
        ("EAFNOSUPPORT",),
    ),
]


@cases(*SECCOMP_ALONE)
def test_seccomp_alone_denies(lab: Lab, seccomp_only, bare, attack: Attack) -> None:
    lab.attack(seccomp_only, attack)
    control = lab.py(bare, attack.code)
    line = verdict(control)
    assert line is not None, f"the control probe reached no verdict: {describe(control)}"
    answer = line.split()[1] if line.startswith("BLOCKED") else None
    assert answer not in attack.errnos, (
        f"control: with seccomp off the attack fails the same way ({line}), so this case does not show "
        "that seccomp is what stops it"
    )


# --- Namespaces and binds alone: Landlock and seccomp off.

NAMESPACES_ALONE = [
    Attack("read-ssh-key", "binds", "attempt('read', lambda: read(ARGS['ssh_key']))", ("ENOENT",)),
    Attack("read-gateway-token", "binds", "attempt('read', lambda: read(ARGS['token']))", ("ENOENT",)),
    Attack("read-state-db", "binds", "attempt('read', lambda: read(ARGS['state_db']))", ("ENOENT",)),
    Attack("read-etc-shadow", "binds", "attempt('read', lambda: read('/etc/shadow'))", ("ENOENT",)),
    Attack(
        "read-key-via-sibling-proc-root",
        "namespaces",
        "attempt('read', lambda: read(f'/proc/{sibling()}/root' + ARGS['ssh_key']))",
        ("ENOENT",),
    ),
    Attack("write-usr", "binds", "attempt('create', lambda: write('/usr/hc-planted'))", ("EROFS",)),
    Attack(
        "connect-1.1.1.1",
        "namespaces",
        "s = socket.socket()\nattempt('connect', lambda: s.connect(('1.1.1.1', 443)))",
        ("ENETUNREACH",),
    ),
    Attack(
        "udp-out",
        "namespaces",
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "attempt('sendto', lambda: s.sendto(b'x', ('8.8.8.8', 53)))",
        ("ENETUNREACH",),
    ),
    Attack(
        "only-loopback",
        "namespaces",
        """
        names = [l.split(':')[0].strip() for l in open('/proc/net/dev').read().splitlines()[2:]]
        if names != ['lo']:
            escaped(f'interfaces {names}')
        blocked('LO')
        """,
    ),
    Attack(
        "host-environment",
        "clearenv",
        """
        # pid 1 is not dumpable: test_clearenv_alone_keeps_the_supervisor_environment_clean
        # reads its environment from the host.
        for pid in ['self', str(sibling())]:
            if ARGS['secret'].encode() in read(f'/proc/{pid}/environ', 1 << 20):
                escaped(f'the host secret in /proc/{pid}/environ')
        blocked('HIDDEN')
        """,
    ),
    Attack("mount", "caps", "attempt('fsopen', lambda: syscall(430, b'tmpfs', 0))", ("EPERM",)),
    Attack("unshare-user", "namespaces", "attempt('unshare', lambda: syscall(272, 0x10000000))", ("ENOSPC",)),
    Attack(
        "raw-socket",
        "caps",
        "attempt('raw socket', lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, 1))",
        ("EPERM",),
    ),
]


@cases(*NAMESPACES_ALONE)
def test_namespaces_and_binds_alone(lab: Lab, bare, attack: Attack) -> None:
    lab.attack(bare, attack)


def test_clearenv_alone_keeps_the_supervisor_environment_clean(lab: Lab, bare, bait: Bait) -> None:
    """layer: clearenv. The supervisor's environment, read from the host (commands cannot:
    it is not dumpable), holds nothing of the host's."""
    environ = Path(f"/proc/{bare.host_pid}/environ").read_bytes()
    assert b"PATH=" in environ, f"the supervisor's environment was not read: {environ[:200]!r}"
    assert bait.secret.encode() not in environ and HOST_SECRET_ENV.encode() not in environ, (
        "ESCAPE: the clearenv layer should keep the host's environment out of the supervisor"
    )


# --- The supervisor not dumpable, alone: Landlock and seccomp off. Commands share its uid
# and its Landlock domain, so only PR_SET_DUMPABLE 0 keeps the ptrace-mode checks behind
# these from letting them at pid 1. The control aims each attack at a sibling the probe
# forks (same uid, dumpable, and the same memory layout), where it must work.

SUPERVISOR = "TARGET = 1\n"
SIBLING = "TARGET = sibling()\n"
# A buffer made before the fork: its address is mapped in the sibling too.
MEMORY = "mine = ctypes.create_string_buffer(b'hc-memory-bytes', 16)\n"

NOT_DUMPABLE = [
    Attack(
        "read-maps",
        "supervisor:not-dumpable",
        "attempt('read maps', lambda: read(f'/proc/{TARGET}/maps'))",
        ("EACCES",),
    ),
    Attack(
        "read-environ",
        "supervisor:not-dumpable",
        "attempt('read environ', lambda: read(f'/proc/{TARGET}/environ'))",
        ("EACCES",),
    ),
    Attack(
        "read-mem",
        "supervisor:not-dumpable",
        """
        def steal():
            fd = os.open(f'/proc/{TARGET}/mem', os.O_RDONLY)
            return os.pread(fd, 16, ctypes.addressof(mine))
        attempt('read mem', steal)
        """,
        ("EACCES",),
    ),
    Attack(
        "write-mem",
        "supervisor:not-dumpable",
        """
        def poke():
            fd = os.open(f'/proc/{TARGET}/mem', os.O_RDWR)
            return os.pwrite(fd, b'pwned', ctypes.addressof(mine))
        attempt('write mem', poke)
        """,
        ("EACCES",),
    ),
    Attack(
        "read-via-root",
        "supervisor:not-dumpable",
        "attempt('read through root', lambda: read(f'/proc/{TARGET}/root/etc/passwd'))",
        ("EACCES",),
    ),
    Attack(
        "open-namespace",
        "supervisor:not-dumpable",
        "attempt('open ns/net', lambda: os.open(f'/proc/{TARGET}/ns/net', os.O_RDONLY))",
        ("EACCES",),
    ),
    Attack(
        "list-fds",
        "supervisor:not-dumpable",
        "attempt('list fd', lambda: os.listdir(f'/proc/{TARGET}/fd'))",
        ("EACCES",),
    ),
    Attack(
        "ptrace-attach",
        "supervisor:not-dumpable",
        "attempt('PTRACE_ATTACH', lambda: syscall(101, 16, TARGET, 0, 0))",
        ("EPERM",),
    ),
    Attack(
        "process-vm-readv",
        "supervisor:not-dumpable",
        """
        buf = ctypes.create_string_buffer(16)
        local = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 16)
        remote = (ctypes.c_void_p * 2)(ctypes.addressof(mine), 16)
        attempt('process_vm_readv', lambda: (syscall(310, TARGET, local, 1, remote, 1, 0), buf.raw))
        """,
        ("EPERM",),
    ),
    Attack(
        "pidfd-getfd",
        "supervisor:not-dumpable",
        """
        pidfd = syscall(434, TARGET, 0)  # pidfd_open: no permission needed
        attempt('pidfd_getfd', lambda: syscall(438, pidfd, 0, 0))
        """,
        ("EPERM",),
    ),
]


def aimed(attack: Attack, target: str) -> str:
    return MEMORY + target + dedent(attack.code)


@cases(*NOT_DUMPABLE)
def test_supervisor_not_dumpable_alone(lab: Lab, bare, attack: Attack) -> None:
    assert_blocked(lab.py(bare, aimed(attack, SUPERVISOR)), attack.layer, attack.errnos)
    lab.works(bare, attack.layer)
    assert_escaped(
        lab.py(bare, aimed(attack, SIBLING)),
        f"{attack.name} on a dumpable sibling of the same uid, with Landlock and seccomp off",
    )


def test_namespaces_alone_keep_host_sockets_apart(lab: Lab, bare, loopback_server, abstract_server) -> None:
    """layer: namespaces. No Landlock network rules here: only the network namespace."""
    tcp, port = loopback_server
    unix, name = abstract_server
    result = lab.py(
        bare,
        "s = socket.socket()\nattempt('connect host lo', lambda: s.connect(('127.0.0.1', ARGS['port'])))",
        args={"port": port},
    )
    assert_blocked(result, "namespaces", ("ECONNREFUSED",))
    result = lab.py(
        bare,
        "s = socket.socket(socket.AF_UNIX)\nattempt('connect', lambda: s.connect('\\0' + ARGS['name']))",
        args={"name": name},
    )
    assert_blocked(result, "namespaces", ("ECONNREFUSED",))
    assert tcp.accepted == 0 and unix.accepted == 0, "ESCAPE: a host socket accepted a sandbox connection"


def test_namespaces_alone_keep_host_processes_apart(lab: Lab, bare, host_victim) -> None:
    result = lab.py(
        bare,
        "attempt('kill', lambda: os.kill(ARGS['victim'], signal.SIGKILL))",
        args={"victim": host_victim.pid},
    )
    assert_blocked(result, "namespaces", ("ESRCH",))
    assert host_victim.poll() is None, "ESCAPE: the namespaces layer should have kept the host process alive"


# --- Rlimits alone: Landlock and seccomp off; the control has the rlimits off too.


MEMORY_BOMB = """
chunks = []
try:
    while len(chunks) < 48:
        chunks.append(bytearray(16 << 20))
except MemoryError:
    blocked(f'ENOMEM after {len(chunks) * 16} MB')
escaped(f'{len(chunks) * 16} MB')
"""

FILE_BOMB = """
with open('/workspace/hc-big', 'wb') as f:
    attempt('write', lambda: f.write(b'\\0' * ((ARGS['max_file_mb'] + 1) << 20)))
"""

RLIMIT_ARGS = {
    "max_processes": SMALL_PROCESS["max_processes"],
    "max_file_mb": SMALL_PROCESS["max_file_size_mb"],
}


@pytest.mark.parametrize(
    ("code", "errno", "what"),
    [
        (FORK_BOMB, "EAGAIN", "fork bomb"),
        (MEMORY_BOMB, "ENOMEM", "memory bomb"),
        (FILE_BOMB, "EFBIG", "oversized file"),
    ],
    ids=["rlimits:fork-bomb", "rlimits:memory-bomb", "rlimits:file-size"],
)
def test_rlimits_alone(lab: Lab, bare, unlimited, code: str, errno: str, what: str) -> None:
    assert_blocked(lab.py(bare, code, args=RLIMIT_ARGS), "rlimits", (errno,))
    lab.works(bare, "rlimits")
    assert_escaped(lab.py(unlimited, code, args=RLIMIT_ARGS), f"the {what} with the rlimits off")


def test_timeout_alone(lab: Lab, unlimited) -> None:
    """layer: timeout. With no rlimits at all, the per-command timeout still ends a hog."""
    result = lab.exec(unlimited, ["sh", "-c", "while :; do :; done"], timeout=1)
    assert result.killed_by == "timeout_seconds" and result.signal == signal.SIGKILL, (
        f"the timeout layer should have killed the hog: {describe(result)}"
    )
    lab.works(unlimited, "timeout")


def test_setuid_root_is_inert_without_landlock_and_seccomp(lab: Lab, bare) -> None:
    """layer: namespaces. With no Landlock (which sets no_new_privs) and no seccomp, nosuid
    binds and the unmapped host root still keep a setuid-root binary from raising the uid."""
    assert os.stat("/usr/bin/su").st_mode & 0o4000, "no setuid-root binary on this host to try"
    result = lab.py(
        bare,
        """
        run = subprocess.run(['su', '-c', 'id -u', 'root'], input='\\n', capture_output=True, text=True)
        mount = subprocess.run(['mount', '-t', 'tmpfs', 'none', '/workspace'], capture_output=True, text=True)
        if run.returncode == 0 or mount.returncode == 0:
            escaped(f'su {run.returncode} {run.stdout!r}; mount {mount.returncode}')
        blocked(f'NONROOT {run.stderr.strip()} / {mount.stderr.strip()}')
        """,
    )
    assert_blocked(result, "namespaces")
