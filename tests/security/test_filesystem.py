"""Filesystem escapes: reading the host, writing outside the workspace, link tricks,
devices. All run in the shared default sandbox, whose workspace is the bait
HERMITCRAB_HOME/workspace (the gateway token and state.db are one folder up on the host)."""

from __future__ import annotations

import os

from .conftest import Attack, Bait, Lab, cases

# With the binds layer, a host path outside the policy simply does not exist inside.
HIDDEN = ("ENOENT",)
# A write that the read-only binds or Landlock refuses.
NO_WRITE = ("EROFS", "EACCES", "EPERM")

READ_HOST = [
    Attack("read-etc-shadow", "binds", "attempt('read /etc/shadow', lambda: read('/etc/shadow'))", HIDDEN),
    Attack(
        "read-ssh-key-outside-workspace",
        "binds",
        "attempt('read a private key', lambda: read(ARGS['ssh_key']))",
        HIDDEN,
    ),
    Attack(
        "read-gateway-token",
        "binds",
        "attempt('read the gateway token', lambda: read(ARGS['token']))",
        HIDDEN,
    ),
    Attack(
        "read-state-db",
        "binds",
        "attempt('read state.db', lambda: read(ARGS['state_db']))",
        HIDDEN,
    ),
    Attack(
        "read-token-via-workspace-parent",
        "binds",
        "attempt('read /workspace/../gateway.token', lambda: read('/workspace/../gateway.token'))",
        HIDDEN,
    ),
    Attack(
        "list-host-hermitcrab-home",
        "binds",
        "attempt('list HERMITCRAB_HOME', lambda: os.listdir(ARGS['home']))",
        HIDDEN,
    ),
    Attack("list-root-home", "binds", "attempt('list /root', lambda: os.listdir('/root'))", HIDDEN),
    # /proc/<pid>/root of a process of the sandbox leads to the sandbox's own root, where the
    # host file does not exist. A sibling (same uid, dumpable) lets us follow the link.
    Attack(
        "read-via-sibling-proc-root",
        "namespaces",
        "attempt('read the key through /proc/<sibling>/root', "
        "lambda: read(f'/proc/{sibling()}/root' + ARGS['ssh_key']))",
        HIDDEN,
    ),
    # The supervisor's /proc/1/root is not even followable: it is not dumpable.
    Attack(
        "read-via-proc-1-root",
        "supervisor:not-dumpable",
        "attempt('read the key through /proc/1/root', lambda: read('/proc/1/root' + ARGS['ssh_key']))",
        ("EACCES",),
    ),
    Attack(
        "read-shadow-via-proc-self-root",
        "namespaces",
        "attempt('read /proc/self/root/etc/shadow', lambda: read('/proc/self/root/etc/shadow'))",
        HIDDEN,
    ),
    Attack(
        "host-accounts-in-passwd",
        "binds",
        """
        text = read('/etc/passwd', 1 << 20).decode()
        names = {line.split(':')[0] for line in text.splitlines()}
        leaked = sorted(names & set(ARGS['host_accounts']))
        if leaked:
            escaped(f'host accounts visible: {leaked}')
        blocked(f'HIDDEN only {sorted(names)}')
        """,
    ),
]

WRITE_OUTSIDE = [
    Attack("write-usr", "binds", "attempt('create /usr/hc-evil', lambda: write('/usr/hc-evil'))", NO_WRITE),
    Attack(
        "write-usr-bin-python",
        "binds",
        "attempt('append to python3', lambda: write(os.path.realpath('/usr/bin/python3'), mode='ab'))",
        NO_WRITE,
    ),
    Attack(
        "write-etc", "landlock", "attempt('create /etc/hc-evil', lambda: write('/etc/hc-evil'))", NO_WRITE
    ),
    Attack(
        "overwrite-sandbox-passwd",
        "binds",
        "attempt('append to /etc/passwd', lambda: write('/etc/passwd', b'x::0:0::/:/bin/sh\\n', 'ab'))",
        NO_WRITE,
    ),
    Attack("write-root", "landlock", "attempt('create /hc-evil', lambda: write('/hc-evil'))", NO_WRITE),
    Attack(
        "mkdir-root", "landlock", "attempt('mkdir /hc-evil-dir', lambda: os.mkdir('/hc-evil-dir'))", NO_WRITE
    ),
    Attack(
        "write-proc-sys",
        "landlock",
        "attempt('write kernel.hostname', lambda: write('/proc/sys/kernel/hostname', b'pwned'))",
        NO_WRITE,
    ),
    Attack(
        "write-proc-sys-core-pattern",
        "landlock",
        "attempt('write core_pattern', lambda: write('/proc/sys/kernel/core_pattern', b'|/workspace/x'))",
        NO_WRITE,
    ),
    Attack(
        "write-proc-sys-drop-caches",
        "landlock",
        "attempt('open vm.drop_caches', lambda: os.open('/proc/sys/vm/drop_caches', os.O_WRONLY))",
        NO_WRITE,
    ),
    Attack(
        "write-supervisor-memory",
        "landlock",
        "attempt('open /proc/1/mem for writing', lambda: os.open('/proc/1/mem', os.O_RDWR))",
        NO_WRITE,
    ),
    Attack(
        "fill-dev-shm",
        "landlock",
        "attempt('create a file in /dev/shm', lambda: write('/dev/shm/hc-fill', b'x' * 4096))",
        NO_WRITE,
    ),
]

LINK_TRICKS = [
    Attack(
        "symlink-to-etc-shadow",
        "binds",
        """
        symlink('/etc/shadow', '/workspace/hc-link-shadow')
        attempt('read through a symlink to /etc/shadow', lambda: read('/workspace/hc-link-shadow'))
        """,
        HIDDEN,
    ),
    Attack(
        "symlink-to-host-secret",
        "binds",
        """
        symlink(ARGS['ssh_key'], '/workspace/hc-link-key')
        attempt('read through a symlink to the key', lambda: read('/workspace/hc-link-key'))
        """,
        HIDDEN,
    ),
    Attack(
        "relative-symlink-climbing-out",
        "binds",
        """
        symlink('../../../../../../..' + ARGS['token'], '/workspace/hc-link-up')
        attempt('read through ../../..', lambda: read('/workspace/hc-link-up'))
        """,
        HIDDEN,
    ),
    Attack(
        "symlink-to-host-passwd",
        "binds",
        """
        symlink('/etc/passwd', '/workspace/hc-link-passwd')
        text = read('/workspace/hc-link-passwd', 1 << 20).decode()
        leaked = sorted({l.split(':')[0] for l in text.splitlines()} & set(ARGS['host_accounts']))
        if leaked:
            escaped(f'the host passwd through a symlink: {leaked}')
        blocked('HIDDEN the link leads to the sandbox passwd')
        """,
    ),
    Attack(
        "hardlink-to-read-only-bind",
        "binds",
        """
        target = os.path.realpath('/usr/bin/python3')
        attempt('hardlink python3 into the workspace', lambda: os.link(target, '/workspace/hc-hardlink-py'))
        """,
        ("EXDEV", "EACCES", "EPERM"),
    ),
    Attack(
        "hardlink-to-etc-passwd",
        "binds",
        "attempt('hardlink /etc/passwd', lambda: os.link('/etc/passwd', '/workspace/hc-hardlink-passwd'))",
        ("EXDEV", "EACCES", "EPERM"),
    ),
    Attack(
        "rename-workspace-file-into-usr",
        "binds",
        """
        write('/workspace/hc-move-me')
        attempt('move a file into /usr/bin', lambda: os.rename('/workspace/hc-move-me', '/usr/bin/hc-evil'))
        """,
        ("EXDEV", "EROFS", "EACCES", "EPERM"),
    ),
]

DEVICES = [
    Attack(
        f"open-dev-{name}", "binds", f"attempt('open /dev/{name}', lambda: read('/dev/{name}', 1))", HIDDEN
    )
    for name in ("mem", "kmem", "port", "sda", "vda", "nvme0n1", "kmsg", "tty0", "console", "fuse")
] + [
    Attack(
        "read-dev-core-kcore",
        "caps",
        "attempt('read /dev/core (kernel memory)', lambda: read('/dev/core', 64))",
        ("EPERM", "EACCES", "ENOENT"),
    ),
    Attack("sys-not-mounted", "binds", "attempt('list /sys', lambda: os.listdir('/sys'))", HIDDEN),
    Attack(
        "mknod-block-device",
        "caps",
        """
        import stat
        attempt('mknod a block device', lambda: os.mknod(
            '/workspace/hc-disk', stat.S_IFBLK | 0o666, os.makedev(253, 0)))
        """,
        ("EPERM",),
    ),
    Attack(
        "mknod-dev-mem",
        "caps",
        """
        import stat
        attempt('mknod /dev/mem', lambda: os.mknod('/tmp/hc-mem', stat.S_IFCHR | 0o666, os.makedev(1, 1)))
        """,
        ("EPERM",),
    ),
    Attack(
        "chown-to-root",
        "caps",
        """
        write('/workspace/hc-own')
        attempt('chown a file to root', lambda: os.chown('/workspace/hc-own', 0, 0))
        """,
        ("EPERM", "EINVAL"),
    ),
]


@cases(*READ_HOST)
def test_host_files_stay_unreadable(lab: Lab, box, attack: Attack) -> None:
    lab.attack(box, attack)


@cases(*WRITE_OUTSIDE)
def test_nothing_outside_the_workspace_is_writable(lab: Lab, box, attack: Attack) -> None:
    lab.attack(box, attack)


@cases(*LINK_TRICKS)
def test_links_do_not_lead_out(lab: Lab, box, attack: Attack) -> None:
    lab.attack(box, attack)


@cases(*DEVICES)
def test_no_devices_or_sys(lab: Lab, box, attack: Attack) -> None:
    lab.attack(box, attack)


def test_host_sees_no_planted_files(lab: Lab, box, bait: Bait) -> None:
    """Whatever the write attacks said, the host itself must show nothing planted."""
    targets = ["/usr/hc-planted", "/usr/bin/hc-planted", "/etc/hc-planted", "/hc-planted"]
    result = lab.py(
        box,
        """
        for path in ARGS['targets'] + [ARGS['home'] + '/hc-planted']:
            try:
                write(path)
            except OSError:
                pass
        blocked('TRIED')
        """,
        args={"targets": targets},
    )
    assert result.exit_code == 0, result
    for path in [*targets, str(bait.home / "hc-planted")]:
        assert not os.path.lexists(path), f"ESCAPE: the binds layer should have kept {path} off the host"
    assert sorted(p.name for p in bait.home.iterdir()) == ["gateway.token", "state.db", "workspace"], (
        "ESCAPE: the binds layer should have kept HERMITCRAB_HOME out of reach"
    )
