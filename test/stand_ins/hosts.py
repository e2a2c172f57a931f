"""Two emulated hosts on this machine: network namespaces joined by a link with a one-way delay.

``EmulatedHosts(delay_ms)`` makes two network namespaces of its own (a learner host and a simulator
host, 10.77.<n>.1 and .2) and joins them:

- ``delay_ms == 0``: a veth pair, the kernel's own link;
- ``delay_ms > 0``: a delay line, a TUN device in each namespace and this module (run as a process:
  ``python test/stand_ins/hosts.py <ns_a> <tun_a> <ns_b> <tun_b> <delay_ms>``) forwarding every packet
  between them ``delay_ms`` late each way. ``tc qdisc ... netem delay`` would be the usual tool,
  but this machine's kernel is built without netem (CONFIG_NET_SCH_NETEM unset), so the delay is
  made in user space: accurate to about 0.1 ms at the packet rates of the lockstep.

Both hosts route multicast over the link (DDS discovery), and run with Fast DDS on UDPv4 only: its
shared-memory transport would otherwise carry the data past the link between processes of one
machine. ``host_env`` is the environment for a process on either host (no LOCALHOST discovery
range: the peers are on another interface; socket buffers large enough for a batch message).
Needs root (``ip netns``); everything made is removed on exit, and traffic stays between the two
namespaces made here.
"""

from __future__ import annotations

import ctypes
import fcntl
import heapq
import itertools
import os
import select
import struct
import subprocess
import sys
import time
from collections.abc import Mapping

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
MTU = 9000  # fewer IP fragments per batch message than 1500, as on a data-center link
# UDP socket buffers for Fast DDS: a lockstep state of 1024 arm7 worlds is 350 KB, sent as one burst
# of datagrams; the default 208 KiB receive buffer drops part of it (RcvbufErrors in /proc/net/snmp)
# and reliable DDS resends it a heartbeat later. At most net.core.rmem_max (4 MiB here).
SOCKETS_SIZE = 4 << 20


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def can_emulate_hosts() -> str | None:
    """Why two hosts cannot be emulated here (None: they can)."""
    if os.geteuid() != 0:
        return "needs root (ip netns)"
    if subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        return "no `ip netns` (iproute2)"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    return None


class EmulatedHosts:
    """The learner host (``learner``) and the simulator host (``simulator``), ``delay_ms`` apart."""

    _count = itertools.count()

    def __init__(self, delay_ms: float = 0.0) -> None:
        self.delay_ms = delay_ms
        n = (os.getpid() + next(self._count)) % 200 + 20
        self.subnet = n
        self.learner, self.simulator = f"sb{n}_learner", f"sb{n}_sim"
        self.addresses = {self.learner: f"10.77.{n}.1", self.simulator: f"10.77.{n}.2"}
        self._relay: subprocess.Popen | None = None

    def __enter__(self) -> EmulatedHosts:
        for ns in (self.learner, self.simulator):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        try:
            self._join()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _join(self) -> None:
        (a, b), n = (self.learner, self.simulator), self.subnet
        devices = {a: f"sb{n}a", b: f"sb{n}b"}
        if self.delay_ms == 0:
            _ip("link", "add", devices[a], "netns", a, "type", "veth", "peer", devices[b], "netns", b)
        else:
            for ns in (a, b):
                _ip("-n", ns, "tuntap", "add", "dev", devices[ns], "mode", "tun")
        for ns, peer in ((a, b), (b, a)):
            device = devices[ns]
            if self.delay_ms == 0:
                _ip("-n", ns, "addr", "add", f"{self.addresses[ns]}/24", "dev", device)
            else:
                _ip("-n", ns, "addr", "add", self.addresses[ns], "peer", self.addresses[peer], "dev", device)
            _ip("-n", ns, "link", "set", device, "mtu", str(MTU), "multicast", "on", "up")
            _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", device)
        if self.delay_ms > 0:
            args = [a, devices[a], b, devices[b], str(self.delay_ms)]
            self._relay = subprocess.Popen([sys.executable, __file__, *args])

    def __exit__(self, *exc: object) -> None:
        if self._relay is not None:
            self._relay.kill()
            self._relay.wait()
        for ns in (self.learner, self.simulator):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)  # its devices go with it

    def command(self, host: str, args: list[str]) -> list[str]:
        """``args`` run on ``host`` (``learner`` or ``simulator``)."""
        return ["ip", "netns", "exec", host, *args]

    @staticmethod
    def host_env(base: Mapping[str, str], domain: int, sockets_size: int = SOCKETS_SIZE) -> dict[str, str]:
        """The environment of a process on either host: ``domain``, no LOCALHOST range, Fast DDS on
        UDPv4 with socket buffers of ``sockets_size`` bytes (0: the system's default, 208 KiB here,
        which a batch of 1024 worlds overflows: see SOCKETS_SIZE)."""
        env = {key: value for key, value in base.items() if key != "ROS_AUTOMATIC_DISCOVERY_RANGE"}
        transports = f"UDPv4?sockets_size={sockets_size}" if sockets_size else "UDPv4"
        env.update(ROS_DOMAIN_ID=str(domain), FASTDDS_BUILTIN_TRANSPORTS=transports)
        return env


def _open_tun(netns: str, name: str) -> int:
    """A file descriptor of TUN device ``name`` in network namespace ``netns`` (this thread moves there)."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open(f"/var/run/netns/{netns}") as handle:
        if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {netns}")
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def relay(ns_a: str, tun_a: str, ns_b: str, tun_b: str, delay_ms: float) -> None:
    """Forward packets between the two TUN devices, each ``delay_ms`` after it was sent, in order."""
    a, b = _open_tun(ns_a, tun_a), _open_tun(ns_b, tun_b)
    other = {a: b, b: a}
    delay = delay_ms / 1e3
    due: list[tuple[float, int, int, bytes]] = []
    order = itertools.count()
    while True:
        timeout = max(0.0, due[0][0] - time.monotonic()) if due else None
        readable, _, _ = select.select([a, b], [], [], timeout)
        now = time.monotonic()
        for fd in readable:
            heapq.heappush(due, (now + delay, next(order), other[fd], os.read(fd, 65536)))
        while due and due[0][0] <= time.monotonic():
            _, _, fd, packet = heapq.heappop(due)
            try:
                os.write(fd, packet)
            except OSError:
                pass  # the far side is not up yet: a lost packet, as on a wire


if __name__ == "__main__":
    ns_a, tun_a, ns_b, tun_b, delay = sys.argv[1:6]
    relay(ns_a, tun_a, ns_b, tun_b, float(delay))
