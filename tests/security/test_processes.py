"""Process escapes: ptrace, other processes' memory and descriptors, namespaces, mounts,
setuid binaries, signals to the host and to the supervisor, terminals, the host's
environment, and processes that try to outlive their sandbox."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hermitcrab.errors import SandboxError

from .conftest import (
    HOST_SECRET_ENV,
    HOST_WAIT_S,
    PRELUDE,
    Attack,
    Lab,
    assert_blocked,
    cases,
    default_read_only_plus,
    describe,
    small_policy,
)

EPERM = ("EPERM",)

# Start a sleeping sibling inside the sandbox and return its pid.
SIBLING = "child = subprocess.Popen(['sleep', '30'])\n"

TRACING = [
    Attack("ptrace-traceme", "seccomp", "attempt('PTRACE_TRACEME', lambda: syscall(101, 0, 0, 0, 0))", EPERM),
    Attack(
        "ptrace-attach-sibling",
        "seccomp",
        SIBLING + "attempt('PTRACE_ATTACH a sibling', lambda: syscall(101, 16, child.pid, 0, 0))",
        EPERM,
    ),
    Attack(
        "ptrace-seize-supervisor",
        "seccomp",
        "attempt('PTRACE_SEIZE pid 1', lambda: syscall(101, 0x4206, 1, 0, 0))",
        EPERM,
    ),
    Attack(
        "process-vm-readv-supervisor",
        "seccomp",
        """
        start = int(open('/proc/self/maps').readline().split('-')[0], 16)
        buf = ctypes.create_string_buffer(16)
        local = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 16)
        remote = (ctypes.c_void_p * 2)(start, 16)
        attempt('process_vm_readv pid 1', lambda: syscall(310, 1, local, 1, remote, 1, 0))
        """,
        EPERM,
    ),
    Attack(
        "process-vm-writev-sibling",
        "seccomp",
        """
        child = subprocess.Popen(['sleep', '30'])
        buf = ctypes.create_string_buffer(16)
        local = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 16)
        remote = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 16)
        attempt('process_vm_writev a sibling', lambda: syscall(311, child.pid, local, 1, remote, 1, 0))
        """,
        EPERM,
    ),
    # The supervisor (pid 1) is the sandbox's trusted init: it holds the host's control
    # socket and every command's stdin and environment. Commands run in its own Landlock
    # domain and as its own uid, so the ptrace-mode checks behind /proc/1/{maps,mem,environ,
    # root,ns} would let them in: what refuses them is that the supervisor is not dumpable
    # (test_layers.py shows it alone). The system calls (ptrace, process_vm_readv,
    # pidfd_getfd) meet seccomp first.
    Attack(
        "read-supervisor-maps",
        "supervisor:not-dumpable",
        "attempt('read /proc/1/maps', lambda: read('/proc/1/maps'))",
        ("EACCES",),
    ),
    Attack(
        "read-supervisor-memory",
        "supervisor:not-dumpable",
        """
        def steal():
            fd = os.open('/proc/1/mem', os.O_RDONLY)
            start = int(read('/proc/1/maps', 64).split(b'-')[0], 16)
            return os.pread(fd, 16, start)
        attempt('read the supervisor memory via /proc/1/mem', steal)
        """,
        ("EACCES",),
    ),
    Attack(
        "pidfd-getfd-steals-supervisor-socket",
        "seccomp",
        """
        import stat
        try:
            pidfd = syscall(434, 1, 0)  # pidfd_open(1)
        except OSError as exc:
            blocked(f'{ename(exc.errno)} pidfd_open')
        stolen, errs = [], set()
        for target in range(0, 64):
            try:
                fd = syscall(438, pidfd, target, 0)  # pidfd_getfd
            except OSError as exc:
                errs.add(ename(exc.errno))
                continue
            kind = 'fd'
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                s = socket.socket(fileno=fd)
                kind = 'listener' if s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) else 'socket'
                s.detach()
            stolen.append(f'{target}:{kind}')
        if stolen:
            escaped(f'took the supervisor descriptors {stolen}')
        blocked(' '.join(sorted(errs - {'EBADF'}) or ['EBADF']) + ' pidfd_getfd')
        """,
        EPERM,
    ),
    Attack(
        "inherited-control-socket",
        "supervisor",
        """
        leaked = []
        for fd in range(3, 1024):
            try:
                mode = os.fstat(fd).st_mode
            except OSError:
                continue
            if (mode & 0o170000) == 0o140000:
                s = socket.socket(fileno=fd)
                listening = s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                leaked.append(f'fd {fd}: socket {s.getsockname()!r} listening={listening}')
                s.detach()
        if leaked:
            escaped('a command inherits the supervisor sockets: ' + '; '.join(leaked))
        blocked('NONE no inherited socket')
        """,
    ),
]

NAMESPACES = [
    Attack(
        "unshare-user",
        "seccomp",
        "attempt('unshare(CLONE_NEWUSER)', lambda: syscall(272, 0x10000000))",
        EPERM,
    ),
    Attack(
        "unshare-mount", "seccomp", "attempt('unshare(CLONE_NEWNS)', lambda: syscall(272, 0x20000))", EPERM
    ),
    Attack(
        "unshare-net-pid",
        "seccomp",
        "attempt('unshare(NEWNET|NEWPID)', lambda: syscall(272, 0x40000000 | 0x20000000))",
        EPERM,
    ),
    Attack(
        "unshare-r-tool",
        "seccomp",
        """
        run = subprocess.run(['unshare', '-r', 'id', '-u'], capture_output=True, text=True)
        if run.returncode == 0:
            escaped(f'unshare -r worked: uid {run.stdout.strip()}')
        blocked('EPERM ' + run.stderr.strip() if 'not permitted' in run.stderr else 'FAILED ' + run.stderr)
        """,
        EPERM,
    ),
    Attack(
        "clone-newuser",
        "seccomp",
        # clone(CLONE_NEWUSER | SIGCHLD): a child that got through reports and exits at once.
        "attempt('clone(CLONE_NEWUSER)', lambda: syscall(56, 0x10000000 | 17, 0, 0, 0, 0))",
        EPERM,
    ),
    Attack(
        "clone3-newuser",
        "seccomp",
        """
        args = (ctypes.c_uint64 * 11)(0x10000000, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0)
        attempt('clone3(CLONE_NEWUSER)', lambda: syscall(435, args, ctypes.sizeof(args)))
        """,
        ("ENOSYS", "EPERM"),
    ),
    Attack(
        "setns-sibling-net",
        "seccomp",
        """
        fd = os.open(f'/proc/{sibling()}/ns/net', os.O_RDONLY)
        attempt('setns', lambda: syscall(308, fd, 0))
        """,
        EPERM,
    ),
    Attack(
        "open-supervisor-namespaces",
        "supervisor:not-dumpable",
        "attempt('open /proc/1/ns/net', lambda: os.open('/proc/1/ns/net', os.O_RDONLY))",
        ("EACCES",),
    ),
    Attack(
        "mount-tmpfs",
        "seccomp",
        """
        os.makedirs('/workspace/hc-mnt', exist_ok=True)
        libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_void_p]
        def go():
            if libc.mount(b'none', b'/workspace/hc-mnt', b'tmpfs', 0, None) != 0:
                raise OSError(ctypes.get_errno(), 'mount')
        attempt('mount a tmpfs', go)
        """,
        EPERM,
    ),
    Attack(
        "mount-tool-bind-remount",
        "seccomp",
        """
        run = subprocess.run(['mount', '-o', 'remount,rw', '/usr'], capture_output=True, text=True)
        if run.returncode == 0:
            escaped('remounted /usr read-write')
        blocked('FAILED ' + run.stderr.strip())
        """,
    ),
    Attack("umount-usr", "seccomp", "attempt('umount2 /usr', lambda: syscall(166, b'/usr', 2))", EPERM),
    Attack(
        "pivot-root",
        "seccomp",
        "attempt('pivot_root', lambda: syscall(155, b'/workspace', b'/workspace'))",
        EPERM,
    ),
    Attack("fsopen", "seccomp", "attempt('fsopen tmpfs', lambda: syscall(430, b'tmpfs', 0))", EPERM),
    Attack(
        "open-tree-clone",
        "seccomp",
        "attempt('open_tree(OPEN_TREE_CLONE)', lambda: syscall(428, -100, b'/usr', 1))",
        EPERM,
    ),
    Attack("chroot", "caps", "attempt('chroot', lambda: os.chroot('/workspace'))", EPERM),
    Attack("setuid-0", "caps", "attempt('setuid(0)', lambda: os.setuid(0))", ("EPERM", "EINVAL")),
    Attack(
        "setgroups-0", "caps", "attempt('setgroups([0])', lambda: os.setgroups([0]))", ("EPERM", "EINVAL")
    ),
    Attack(
        "sethostname",
        "caps",
        "attempt('sethostname', lambda: socket.sethostname('pwned'))",
        EPERM,
    ),
    Attack(
        "capabilities-all-empty",
        "caps",
        """
        lines = open('/proc/self/status').read().splitlines()
        status = dict(l.split(':\\t', 1) for l in lines if ':\\t' in l)
        caps = {k: status[k].strip() for k in ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb')}
        held = {k: v for k, v in caps.items() if int(v, 16)}
        if held:
            escaped(f'capabilities held: {held}')
        if status['NoNewPrivs'].strip() != '1' or status['Seccomp'].strip() != '2':
            escaped(f"no_new_privs={status['NoNewPrivs'].strip()} seccomp={status['Seccomp'].strip()}")
        blocked('NONE no capabilities, no_new_privs, seccomp filter')
        """,
    ),
]

SETUID = [
    Attack(
        "setuid-su",
        "namespaces",
        """
        run = subprocess.run(['su', '-c', 'id -u', 'root'], input='\\n', capture_output=True, text=True)
        if run.returncode == 0 or '0' in run.stdout.split():
            escaped(f'su ran as root: {run.stdout!r}')
        blocked(f'FAILED su exit {run.returncode}: {run.stderr.strip()}')
        """,
    ),
    Attack(
        "setuid-passwd-root",
        "namespaces",
        """
        run = subprocess.run(['passwd', '-d', 'root'], capture_output=True, text=True)
        if run.returncode == 0:
            escaped('passwd -d root succeeded')
        blocked(f'FAILED passwd exit {run.returncode}: {run.stderr.strip()}')
        """,
    ),
    Attack(
        "setuid-binary-keeps-uid",
        "namespaces",
        """
        # A setuid-root copy of sleep, bound read-only from the host: while it runs, what is its
        # effective uid?
        child = subprocess.Popen([ARGS['suid_sleep'], '30'])
        for _ in range(500):
            uids = [l for l in open(f'/proc/{child.pid}/status') if l.startswith('Uid:')][0].split()[1:]
            if open(f'/proc/{child.pid}/comm').read().strip() != 'python3':
                break
            time.sleep(0.01)
        child.kill()
        if '0' in uids:
            escaped(f'the setuid bit made it root: Uid {uids}')
        blocked(f'NONROOT Uid {uids}')
        """,
    ),
]

TERMINALS = [
    Attack(
        "tiocsti-stdout",
        "seccomp",
        """
        import fcntl, termios
        attempt('TIOCSTI on fd 1', lambda: fcntl.ioctl(1, termios.TIOCSTI, b'x'))
        """,
        EPERM,
    ),
    Attack(
        "tiocsti-pty",
        "seccomp",
        """
        import fcntl, termios
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)  # our own controlling terminal: the kernel would allow it
        attempt('TIOCSTI into a pty', lambda: fcntl.ioctl(slave, termios.TIOCSTI, b'x'))
        """,
        EPERM,
    ),
    Attack(
        "tiocsti-pty-high-bits",
        "seccomp",
        """
        import fcntl, termios
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        char = ctypes.c_char(b'x')
        # The kernel reads the request as 32 bits: set high bits to slip past a 64-bit compare.
        attempt('TIOCSTI | 1<<32', lambda: syscall(16, slave, 0x100005412, ctypes.byref(char)))
        """,
        EPERM,
    ),
    Attack(
        "controlling-terminal",
        "supervisor",
        "attempt('open /dev/tty', lambda: os.open('/dev/tty', os.O_RDWR))",
        ("ENXIO", "EACCES", "ENOENT"),
    ),
]

ENVIRONMENT = [
    Attack(
        "host-env-in-environ",
        "clearenv",
        """
        leaked = [k for k, v in os.environ.items() if ARGS['secret'] in v or k == ARGS['env_name']]
        leaked += [k for k in ('SSH_AUTH_SOCK', 'HERMITCRAB_HOME', 'VIRTUAL_ENV', 'PYTEST_CURRENT_TEST')
                   if k in os.environ]
        if leaked:
            escaped(f'host variables visible: {leaked}')
        blocked(f'HIDDEN {sorted(os.environ)}')
        """,
    ),
    Attack(
        "host-env-via-env-tool",
        "clearenv",
        """
        out = subprocess.run(['env'], capture_output=True, text=True).stdout
        if ARGS['secret'] in out or ARGS['env_name'] in out:
            escaped('env shows the host secret')
        blocked('HIDDEN')
        """,
    ),
    Attack(
        "host-env-via-proc-environ",
        "clearenv",
        """
        found = []
        for pid in ['self', '1'] + [p for p in os.listdir('/proc') if p.isdigit()]:
            try:
                data = read(f'/proc/{pid}/environ', 1 << 20)
            except OSError:
                continue
            if ARGS['secret'].encode() in data or ARGS['env_name'].encode() in data:
                found.append(pid)
        if found:
            escaped(f'the host secret in /proc/<pid>/environ of {found}')
        blocked('HIDDEN')
        """,
    ),
    # The loop above skips what it cannot read; pid 1's environ must be among those (and
    # test_supervisor_environment_is_clean reads it from the host).
    Attack(
        "read-supervisor-environ",
        "supervisor:not-dumpable",
        "attempt('read /proc/1/environ', lambda: read('/proc/1/environ', 1 << 20))",
        ("EACCES",),
    ),
    Attack(
        "host-processes-in-proc",
        "namespaces",
        """
        seen = []
        for pid in [p for p in os.listdir('/proc') if p.isdigit()]:
            try:
                cmd = read(f'/proc/{pid}/cmdline', 1 << 16)
            except OSError:
                continue
            if b'py' + b'test' in cmd:  # spelled so that this probe's own cmdline does not match
                seen.append((pid, cmd[:80]))
        if seen:
            escaped(f'host processes visible: {seen}')
        if os.getppid() != 1:
            escaped(f'the parent is pid {os.getppid()}, not the sandbox init')
        blocked('HIDDEN')
        """,
    ),
]


@pytest.fixture(scope="module")
def suid_dir() -> Iterator[Path]:
    """A host folder holding a setuid-root copy of sleep, for a policy to bind read-only."""
    folder = Path(tempfile.mkdtemp(prefix="hcsuid", dir="/var/tmp"))
    folder.chmod(0o755)
    target = folder / "sleep"
    shutil.copy(shutil.which("sleep") or "/usr/bin/sleep", target)
    os.chown(target, 0, 0)
    target.chmod(0o4755)
    assert target.stat().st_mode & stat.S_ISUID
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@cases(*TRACING)
def test_no_tracing_or_stealing_from_other_processes(lab: Lab, box, attack: Attack) -> None:
    lab.attack(box, attack)


@cases(*NAMESPACES)
def test_no_new_namespaces_mounts_or_privileges(lab: Lab, box, attack: Attack) -> None:
    lab.attack(box, attack)


@cases(*SETUID)
def test_setuid_binaries_stay_unprivileged(lab: Lab, fresh, suid_dir: Path, attack: Attack) -> None:
    box = fresh(policy=small_policy(filesystem=default_read_only_plus(str(suid_dir))))
    lab.attack(box, attack, args={"suid_sleep": str(suid_dir / "sleep")})


@cases(*TERMINALS)
def test_no_terminal_injection(lab: Lab, box, attack: Attack) -> None:
    lab.attack(box, attack)


@cases(*ENVIRONMENT)
def test_host_environment_and_processes_stay_hidden(lab: Lab, box, attack: Attack) -> None:
    lab.attack(box, attack)


def test_kill_host_process(lab: Lab, box, host_victim) -> None:
    """layer: namespaces. The victim runs as the sandbox's own uid, so only the pid namespace
    keeps the signal from it."""
    line = assert_blocked(
        lab.py(
            box,
            "attempt('kill -9 a host pid', lambda: os.kill(ARGS['victim'], signal.SIGKILL))",
            args={"victim": host_victim.pid},
        ),
        "namespaces",
        ("ESRCH",),
    )
    assert host_victim.poll() is None, (
        f"ESCAPE: the namespaces layer should have kept the host process: {line}"
    )


def test_kill_everything_spares_host_and_sandbox(lab: Lab, fresh, host_victim) -> None:
    """layer: namespaces + supervisor. kill(-1, SIGKILL) reaches every process the caller
    may signal: in a pid namespace, none outside it and never its init."""
    box = fresh()
    result = lab.sh(box, "kill -9 -1; echo done")
    assert host_victim.poll() is None, f"ESCAPE: kill -9 -1 reached a host process: {describe(result)}"
    lab.works(box, "namespaces")


SIGNALS = [
    "SIGKILL",
    "SIGTERM",
    "SIGINT",
    "SIGHUP",
    "SIGQUIT",
    "SIGUSR1",
    "SIGUSR2",
    "SIGSEGV",
    "SIGABRT",
    "SIGALRM",
    "SIGPIPE",
    "SIGXCPU",
    "SIGSTOP",
]


@pytest.mark.parametrize("name", SIGNALS, ids=[f"supervisor:signal-pid-1-{s}" for s in SIGNALS])
def test_signal_to_supervisor_leaves_it_serving(lab: Lab, fresh, name: str) -> None:
    """The supervisor is pid 1 of the sandbox: the kernel drops signals sent to it from
    inside unless it handles them, so it must handle none that a command can use."""
    box = fresh()
    try:
        sent = lab.sh(box, f"kill -s {name[3:]} 1; echo sent=$?")
    except SandboxError:
        pass  # the supervisor went away during the command: works() says so below
    else:
        assert sent.stdout.startswith(b"sent="), describe(sent)
    lab.works(box, "supervisor")


def test_commands_cannot_hijack_exec_requests(lab: Lab, fresh) -> None:
    """layer: supervisor. A daemon left by one command must not be able to answer the host's
    later exec requests (and read their argv, env and stdin)."""
    box = fresh()
    forged = base64.b64encode(b"FORGED\n").decode()
    armed = lab.py(
        box,
        """
        listeners = []
        for fd in range(3, 1024):
            try:
                s = socket.socket(fileno=fd)
            except OSError:
                continue
            try:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                    listeners.append(s)
                    continue
            except OSError:
                pass
            s.detach()
        if not listeners:
            blocked('NONE no listening socket to take over')
        if os.fork() == 0:
            os.setsid()
            null = os.open('/dev/null', os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            while True:
                conn, _ = listeners[0].accept()
                request = conn.makefile('rb').readline()
                with open('/workspace/hc-stolen-requests', 'ab') as log:
                    log.write(request)
                conn.sendall(ARGS['frames'].encode())
                conn.close()
        escaped(f'a daemon now accepts on the supervisor socket fd {listeners[0].fileno()}')
        """,
        args={
            "frames": json.dumps({"t": "o", "d": forged}) + "\n" + json.dumps({"t": "x", "exit": 0}) + "\n"
        },
    )
    replies = [lab.exec(box, ["echo", f"genuine-{i}"], host_wait=20) for i in range(8)]
    hijacked = [r for i, r in enumerate(replies) if r.stdout != f"genuine-{i}\n".encode()]
    assert not hijacked, (
        f"ESCAPE: the supervisor layer should keep its control socket to itself; "
        f"{len(hijacked)} of {len(replies)} exec requests were answered by a command's daemon "
        f"({armed.stdout.decode(errors='replace').strip()}); forged replies: {[r.stdout for r in hijacked]}"
    )


def test_supervisor_environment_is_clean(lab: Lab, box, bait) -> None:
    """layer: clearenv. Commands cannot read /proc/1/environ (not dumpable); the host can,
    and the host's environment must not be in it either."""
    environ = Path(f"/proc/{box.host_pid}/environ").read_bytes()
    assert b"PATH=" in environ, f"the supervisor's environment was not read: {environ[:200]!r}"
    assert bait.secret.encode() not in environ and HOST_SECRET_ENV.encode() not in environ, (
        "ESCAPE: the clearenv layer should keep the host's environment out of the supervisor"
    )


# Detached daemons of every kind, started by a command that then stays running: the
# supervisor sweeps processes whose command has ended, so only a live command keeps them.
DAEMONS = """
quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
# Popen returns once the child has called setsid and exec'd.
subprocess.Popen(['setsid', 'sleep', '1000'], start_new_session=True, **quiet)
subprocess.Popen(['nohup', 'sleep', '1001'], start_new_session=True, **quiet)
if os.fork() == 0:  # the classic double fork
    os.setsid()
    if os.fork() == 0:
        os.execvp('sleep', ['sleep', '1002'])
    os._exit(0)
os.wait()
print('STARTED', flush=True)
time.sleep(ARGS['hold_s'])
"""


def _start_time(pid: int) -> str | None:
    """A process's start time (clock ticks since boot): with the pid, it names one process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


def _session(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])
    except OSError:
        return None


def test_background_processes_die_with_the_sandbox(lab: Lab, fresh) -> None:
    """layer: namespaces. Detached daemons (setsid, nohup, double fork) of a command still
    running must not survive destroy: the sandbox's init dies and the kernel kills its whole
    pid namespace. Every process of the sandbox, as the host saw it, must be gone."""
    hold_s = 50
    box = fresh(policy=small_policy(process={"timeout_seconds": hold_s + 5}))
    payload = json.dumps({**lab.bait.args(), "hold_s": hold_s})
    argv = ["python3", "-c", PRELUDE + DAEMONS, payload]

    def daemons() -> dict[int, str]:
        found = {}
        for pid in lab.driver.processes(box):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if cmd.startswith("sleep 10") and (start := _start_time(pid)):
                found[pid] = start
        return found

    async def start_command() -> tuple[asyncio.Task[object], dict[int, str]]:
        command = asyncio.ensure_future(lab.driver.exec(box, argv))
        deadline = time.monotonic() + 15
        while len(found := daemons()) < 3:
            if command.done():
                raise AssertionError(f"the command ended before its daemons ran: {command.result()}")
            assert time.monotonic() < deadline, f"the three daemons never ran (saw {found})"
            await asyncio.sleep(0.02)
        return command, found

    command, found = lab.run(start_command())
    everything = {pid: start for pid in lab.driver.processes(box) if (start := _start_time(pid))}
    try:
        assert not command.done(), "the command ended: destroy must be tested while it runs"
        sessions = {_session(pid) for pid in found}
        assert len(sessions) == 3, f"the daemons are not in sessions of their own: {sessions}"
        assert box.host_pid in everything and set(found) <= set(everything), (everything, found)
    finally:
        lab.destroy(box)
        with contextlib.suppress(SandboxError, TimeoutError):
            lab.run(asyncio.wait_for(command, HOST_WAIT_S))  # it ends with the sandbox
    survivors = [pid for pid, start in everything.items() if _start_time(pid) == start]
    assert not survivors, (
        f"ESCAPE: the namespaces layer should have killed every process of the sandbox; "
        f"{survivors} survived destroy (daemons: {sorted(found)}, supervisor: {box.host_pid})"
    )
