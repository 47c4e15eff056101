"""Kernel attack surface: the system calls the seccomp filter denies. Each is called for
real, with arguments that would work (or at least reach the kernel's own checks) without
the filter; the filter's answer is EPERM (ENOSYS for clone3)."""

from __future__ import annotations

from .conftest import Attack, Lab, cases

EPERM = ("EPERM",)


def call(name: str, nr: int, *args: str, setup: str = "") -> Attack:
    """An attack that is one raw system call (x86_64 numbers)."""
    arglist = "".join(f", {a}" for a in args)
    return Attack(name, "seccomp", f"{setup}\nattempt('{name}', lambda: syscall({nr}{arglist}))", EPERM)


SYSCALLS = [
    # The kernel keyring is not namespaced: keys of other users, session keyrings.
    call("keyctl-session-keyring", 250, "0", "-3", "1"),  # KEYCTL_GET_KEYRING_ID, session, create
    call("add-key", 248, "b'user'", "b'hc'", "b'secret'", "6", "-2"),
    call("request-key", 249, "b'user'", "b'hc'", "None", "-2"),
    # eBPF: map creation is the first step of every verifier exploit.
    call(
        "bpf-map-create",
        321,
        "0",
        "attr",
        "ctypes.sizeof(attr)",
        setup="attr = (ctypes.c_uint32 * 12)(2, 4, 8, 1)  # BPF_MAP_TYPE_ARRAY, key 4, value 8, 1 entry",
    ),
    call(
        "bpf-prog-load",
        321,
        "5",
        "attr",
        "ctypes.sizeof(attr)",
        setup=(
            "insns = (ctypes.c_uint64 * 2)(0xB7, 0x95)  # r0 = 0; exit\n"
            "lic = ctypes.create_string_buffer(b'GPL')\n"
            "attr = (ctypes.c_uint64 * 16)()\n"
            "struct.pack_into('IIQQ', attr, 0, 1, 2, ctypes.addressof(insns), ctypes.addressof(lic))"
        ),
    ),
    # io_uring: a second way into the kernel that seccomp cannot filter call by call.
    call("io-uring-setup", 425, "8", "params", setup="params = ctypes.create_string_buffer(120)"),
    call("io-uring-enter", 426, "0", "0", "0", "0", "0", "0"),
    call("io-uring-register", 427, "0", "0", "0", "0"),
    # userfaultfd: stalls the kernel mid-copy, the classic race-widening tool.
    call("userfaultfd", 323, "1"),  # UFFD_USER_MODE_ONLY: no privilege needed without the filter
    call(
        "perf-event-open",
        298,
        "attr",
        "0",
        "-1",
        "-1",
        "0",
        setup=(
            "attr = ctypes.create_string_buffer(128)\n"
            "struct.pack_into('IIQ', attr, 0, 1, 128, 0)  # PERF_TYPE_SOFTWARE, CPU_CLOCK\n"
            "struct.pack_into('Q', attr, 40, 1 << 5 | 1 << 6)  # exclude_kernel | exclude_hv"
        ),
    ),
    # open_by_handle_at: the "shocker" container escape (open any inode by number).
    call(
        "open-by-handle-at-shocker",
        304,
        "mount_fd",
        "handle",
        "0",
        setup=(
            "mount_fd = os.open('/workspace', os.O_RDONLY)\n"
            "handle = ctypes.create_string_buffer(struct.pack('Ii', 8, 1) + struct.pack('Q', 2))"
        ),
    ),
    call(
        "name-to-handle-at",
        303,
        "-100",
        "b'/workspace'",
        "handle",
        "ctypes.byref(mount_id)",
        "0",
        setup=(
            "handle = ctypes.create_string_buffer(struct.pack('Ii', 128, 0) + bytes(128))\n"
            "mount_id = ctypes.c_int()"
        ),
    ),
    call("personality-no-aslr", 135, "0x0040000"),  # ADDR_NO_RANDOMIZE
    call("syslog-read-kernel-log", 103, "3", "buf", "4096", setup="buf = ctypes.create_string_buffer(4096)"),
    call("kexec-load", 246, "0", "0", "0", "0"),
    call("kexec-file-load", 320, "-1", "-1", "0", "b''", "0"),
    call("init-module", 175, "image", "4", "b''", setup="image = ctypes.create_string_buffer(4)"),
    call("finit-module", 313, "os.open('/dev/null', os.O_RDONLY)", "b''", "0"),
    call("delete-module", 176, "b'ext4'", "0x800"),  # O_NONBLOCK
    call("iopl", 172, "3"),
    call("ioperm", 173, "0x80", "1", "1"),
    call("acct", 163, "b'/workspace/hc-acct'"),
    call("swapon", 167, "b'/workspace/hc-swap'", "0"),
    call("reboot-cad-off", 169, "0xfee1dead", "672274793", "0", "0"),  # LINUX_REBOOT_CMD_CAD_OFF
    call("vhangup", 153),
    call("quotactl", 179, "0x800007", "b'/dev/null'", "0", "0"),  # Q_GETFMT
    call("move-mount", 429, "-100", "b'/usr'", "-100", "b'/workspace'", "0"),
    call("fsconfig", 431, "-1", "0", "0", "0", "0"),
    call("fsmount", 432, "-1", "0", "0"),
    call("lookup-dcookie", 212, "0", "0", "0"),
]


@cases(*SYSCALLS)
def test_dangerous_system_calls_are_denied(lab: Lab, box, attack: Attack) -> None:
    lab.attack(box, attack)
