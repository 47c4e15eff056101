"""Network escapes: the host's loopback and abstract sockets, the outside world, DNS, and
the socket families and types that talk to the kernel rather than to a peer. None of it
needs a real outside network: the sandbox's network namespace is empty by construction."""

from __future__ import annotations

from .conftest import Attack, Lab, assert_blocked, cases

# In the sandbox's own network namespace there is only a loopback interface; Landlock
# (ABI 4+) also refuses every TCP connect, which answers EACCES first.
NO_ROUTE = ("ENETUNREACH", "EACCES", "ECONNREFUSED", "EHOSTUNREACH")

WORLD = [
    Attack(
        "connect-1.1.1.1",
        "namespaces",
        """
        s = socket.socket(); s.settimeout(5)
        attempt('connect 1.1.1.1:443', lambda: s.connect(('1.1.1.1', 443)))
        """,
        NO_ROUTE,
    ),
    Attack(
        "udp-to-public-dns",
        "namespaces",
        """
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        attempt('send a DNS query to 8.8.8.8', lambda: s.sendto(b'\\0' * 12, ('8.8.8.8', 53)))
        """,
        ("ENETUNREACH",),
    ),
    Attack(
        "connect-ipv6",
        "namespaces",
        """
        s = socket.socket(socket.AF_INET6); s.settimeout(5)
        attempt('connect [2606:4700:4700::1111]:443', lambda: s.connect(('2606:4700:4700::1111', 443)))
        """,
        (*NO_ROUTE, "EADDRNOTAVAIL"),
    ),
    Attack(
        "dns-resolution",
        "namespaces",
        """
        try:
            found = socket.getaddrinfo('example.com', 443)
        except socket.gaierror as exc:
            blocked(f'EAI {exc}')
        escaped(f'resolved example.com: {found[:1]}')
        """,
        ("EAI",),
    ),
    Attack(
        "curl-out",
        "namespaces",
        """
        run = subprocess.run(['curl', '-sS', '--max-time', '5', 'https://example.com/'],
                             capture_output=True, text=True)
        if run.returncode == 0:
            escaped('curl fetched example.com')
        blocked(f'CURL{run.returncode} {run.stderr.strip()}')
        """,
    ),
    Attack(
        "only-loopback-interface",
        "namespaces",
        """
        lines = open('/proc/net/dev').read().splitlines()[2:]  # the namespace's own interfaces
        names = [line.split(':')[0].strip() for line in lines]
        if names != ['lo']:
            escaped(f'interfaces visible: {names}')
        blocked('LO only lo')
        """,
    ),
    Attack(
        "host-control-socket-path",
        "binds",
        """
        s = socket.socket(socket.AF_UNIX)
        attempt('connect the host control socket', lambda: s.connect(ARGS['ctl']))
        """,
        ("ENOENT",),
    ),
    Attack(
        "ping-socket",
        "namespaces",
        """
        def ping():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
            return s.sendto(b'\\x08\\0\\0\\0\\0\\0\\0\\0', ('1.1.1.1', 0))
        attempt('ICMP echo to 1.1.1.1', ping)
        """,
        ("EACCES", "ENETUNREACH", "EPERM"),
    ),
]

# Raw and packet sockets can forge traffic or listen to the kernel: the filter refuses
# the types (EPERM) and every family but Unix, IPv4 and IPv6 (EAFNOSUPPORT).
KERNEL_SOCKETS = [
    Attack(
        name,
        "seccomp",
        f"attempt('socket({family}, {kind}, {proto})', lambda: socket.socket({family}, {kind}, {proto}))",
        errnos,
    )
    for name, family, kind, proto, errnos in [
        ("raw-ipv4-icmp", 2, 3, 1, ("EPERM",)),
        ("raw-ipv4-with-flags", 2, "3 | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK", 255, ("EPERM",)),
        ("raw-ipv6", 10, 3, 58, ("EPERM",)),
        ("sock-packet-ipv4", 2, 10, 0x0300, ("EPERM",)),
        ("af-packet-raw", 17, 3, 0x0300, ("EAFNOSUPPORT", "EPERM")),
        ("af-packet-dgram", 17, 2, 0x0300, ("EAFNOSUPPORT",)),
        ("netlink-route", 16, 2, 0, ("EAFNOSUPPORT",)),
        ("netlink-audit", 16, 2, 9, ("EAFNOSUPPORT",)),
        ("netlink-uevent", 16, 2, 15, ("EAFNOSUPPORT",)),
        ("netlink-xfrm", 16, 2, 6, ("EAFNOSUPPORT",)),
        ("af-vsock", 40, 1, 0, ("EAFNOSUPPORT",)),
        ("af-alg", 38, 5, 0, ("EAFNOSUPPORT",)),
        ("af-key", 15, 3, 2, ("EAFNOSUPPORT", "EPERM")),
        ("af-bluetooth", 31, 3, 1, ("EAFNOSUPPORT", "EPERM")),
        ("af-can", 29, 3, 1, ("EAFNOSUPPORT", "EPERM")),
    ]
]


@cases(*WORLD)
def test_no_network(lab: Lab, box, attack: Attack) -> None:
    lab.attack(box, attack, args={"ctl": str(box.socket_path)})


@cases(*KERNEL_SOCKETS)
def test_no_raw_packet_or_kernel_sockets(lab: Lab, box, attack: Attack) -> None:
    lab.attack(box, attack)


def test_host_loopback_unreachable(lab: Lab, box, loopback_server) -> None:
    """layer: namespaces. A real TCP server on the host's 127.0.0.1: the sandbox's 127.0.0.1
    is its own loopback, so nothing it sends can arrive here."""
    server, port = loopback_server
    result = lab.py(
        box,
        """
        s = socket.socket(); s.settimeout(5)
        attempt('connect the host 127.0.0.1', lambda: s.connect(('127.0.0.1', ARGS['port'])))
        """,
        args={"port": port},
    )
    assert_blocked(result, "namespaces", ("ECONNREFUSED", "EACCES"))
    assert server.accepted == 0, "ESCAPE: the namespaces layer should keep the host's loopback out of reach"


def test_host_abstract_unix_socket_unreachable(lab: Lab, box, abstract_server) -> None:
    """layer: namespaces. Abstract Unix socket names live in the network namespace; Landlock
    (ABI 6+) scopes them as well."""
    server, name = abstract_server
    result = lab.py(
        box,
        """
        s = socket.socket(socket.AF_UNIX)
        attempt('connect the host abstract socket', lambda: s.connect('\\0' + ARGS['name']))
        """,
        args={"name": name},
    )
    assert_blocked(result, "namespaces", ("ECONNREFUSED", "EPERM"))
    assert server.accepted == 0, "ESCAPE: the namespaces layer should keep the host's abstract sockets apart"
