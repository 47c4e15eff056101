"""The seccomp filter every sandbox runs under, built with libseccomp, exported as BPF.

Default allow, with the dangerous calls denied: the list below is the whole promise,
and each entry says why it is there.
"""

from __future__ import annotations

import errno
import functools
import socket
import tempfile

from hermitcrab.errors import SandboxError

# Calls no sandboxed program needs and many escapes use.
DENIED = {
    "ptrace": "inspect or steer another process",
    "process_vm_readv": "read another process's memory",
    "process_vm_writev": "write another process's memory",
    "pidfd_getfd": "take another process's file descriptors",
    "mount": "change the filesystem layout",
    "umount2": "change the filesystem layout",
    "pivot_root": "change the filesystem root",
    "move_mount": "change the filesystem layout",
    "open_tree": "clone a mount",
    "fsopen": "create a filesystem",
    "fsmount": "create a mount",
    "fsconfig": "configure a filesystem",
    "unshare": "new namespaces",
    "setns": "enter other namespaces",
    "bpf": "load kernel programs",
    "perf_event_open": "kernel profiling (a long list of CVEs)",
    "keyctl": "the kernel keyring (not namespaced)",
    "add_key": "the kernel keyring",
    "request_key": "the kernel keyring",
    "kexec_load": "replace the kernel",
    "kexec_file_load": "replace the kernel",
    "init_module": "load kernel modules",
    "finit_module": "load kernel modules",
    "delete_module": "unload kernel modules",
    "userfaultfd": "stall the kernel at will (race exploits)",
    "io_uring_setup": "a second syscall interface that seccomp cannot see",
    "io_uring_enter": "a second syscall interface",
    "io_uring_register": "a second syscall interface",
    "open_by_handle_at": "open files by handle, bypassing the mount tree",
    "name_to_handle_at": "file handles",
    "personality": "turn off address-space randomisation",
    "acct": "process accounting",
    "swapon": "swap devices",
    "swapoff": "swap devices",
    "reboot": "reboot",
    "syslog": "the kernel log",
    "iopl": "raw port I/O",
    "ioperm": "raw port I/O",
    "quotactl": "filesystem quotas",
    "lookup_dcookie": "kernel internals",
    "vhangup": "terminal hijack",
    "nfsservctl": "kernel NFS",
}

# Namespaces created through clone() rather than unshare().
CLONE_NAMESPACE_FLAGS = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}
TIOCSTI = 0x5412  # push characters into a terminal's input
SOCK_TYPE_MASK = 0xF
SOCK_PACKET = 10  # obsolete packet sockets; Python does not name it
ALLOWED_FAMILIES = (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6)


@functools.cache
def filter_bpf() -> bytes:
    """The compiled filter, built once per process."""
    try:
        import pyseccomp as seccomp
    except (ImportError, OSError) as exc:
        raise SandboxError(
            f"libseccomp is not available ({exc}). fix: apt-get install libseccomp2 && pip install pyseccomp"
        ) from None
    eperm = seccomp.ERRNO(errno.EPERM)
    f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in DENIED:
        try:
            f.add_rule(eperm, name)
        except (OSError, ValueError, RuntimeError):
            pass  # a call this architecture does not have
    # clone3 passes its flags in memory seccomp cannot read: make libc fall back to clone.
    f.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    for flag in CLONE_NAMESPACE_FLAGS.values():
        f.add_rule(eperm, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    f.add_rule(eperm, "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, TIOCSTI))
    # Socket families: only Unix, IPv4 and IPv6. Expressed as the ranges around the
    # allowed ones, so a family added to the kernel tomorrow is denied too.
    eafnosupport = seccomp.ERRNO(errno.EAFNOSUPPORT)
    _, mid, high = sorted(ALLOWED_FAMILIES)
    for family in range(0, mid):
        if family not in ALLOWED_FAMILIES:
            f.add_rule(eafnosupport, "socket", seccomp.Arg(0, seccomp.EQ, family))
    for family in range(mid + 1, high):
        f.add_rule(eafnosupport, "socket", seccomp.Arg(0, seccomp.EQ, family))
    f.add_rule(eafnosupport, "socket", seccomp.Arg(0, seccomp.GT, high))
    # No raw or packet sockets in any family.
    f.add_rule(eperm, "socket", seccomp.Arg(1, seccomp.MASKED_EQ, SOCK_TYPE_MASK, socket.SOCK_RAW))
    f.add_rule(eperm, "socket", seccomp.Arg(1, seccomp.MASKED_EQ, SOCK_TYPE_MASK, SOCK_PACKET))
    with tempfile.TemporaryFile() as out:
        f.export_bpf(out)
        out.seek(0)
        return out.read()
