"""Hosts for the multi-host test: one network namespace per host on a private bridge.

    root ns ── veth ──┐
    host ns ── veth ──┤ bridge, in a "switch" namespace of its own
    host ns ── veth ──┘

Every address lives only on these veths, in namespaces this test creates and removes:
no packet leaves the machine. The test process (root namespace) joins the bridge too,
to reach PostgreSQL for its assertions and the web process for its requests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def netns_unavailable() -> str | None:
    """Why this machine cannot run the test, exactly; None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    for tool, package in (("ip", "iproute2"), ("iptables", "iptables"), ("tc", "iproute2")):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (apt-get install {package})"
    probe = f"abprobe{os.getpid() % 10000}"  # netem is checked apart: netem_unavailable()
    made = sh("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    try:
        rule = sh(
            "ip", "netns", "exec", probe, "iptables", "-A", "OUTPUT", "-d", "127.0.0.2", "-j", "DROP", check=False
        )
        if rule.returncode != 0:
            return f"iptables does not work inside a namespace: {rule.stderr.strip()}"
    finally:
        sh("ip", "netns", "del", probe, check=False)
    return None


def netem_unavailable() -> str | None:
    """Why ``tc qdisc ... netem`` cannot add latency here, exactly; None when it can."""
    probe = f"abnetem{os.getpid() % 10000}"
    sh("ip", "netns", "add", probe)
    try:
        sh("ip", "netns", "exec", probe, "ip", "link", "set", "lo", "up")
        qdisc = sh(
            "ip",
            "netns",
            "exec",
            probe,
            "tc",
            "qdisc",
            "add",
            "dev",
            "lo",
            "root",
            "netem",
            "delay",
            "1ms",
            check=False,
        )
        if qdisc.returncode != 0:
            return f"`tc qdisc add ... netem delay` answers {qdisc.stderr.strip()!r} (kernel {os.uname().release} has no sch_netem)"
    finally:
        sh("ip", "netns", "del", probe, check=False)
    return None


@dataclass
class Network:
    """A /24 on a bridge; ``host(name, last_octet)`` adds a namespace with one address."""

    prefix: str  # e.g. "10.251.1"
    tag: str  # short and unique: names are at most 15 characters
    hosts: dict[str, str] = field(default_factory=dict)  # name -> address
    _links: list[str] = field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"{self.tag}-sw"

    def namespace(self, name: str) -> str:
        return f"{self.tag}-{name}"

    def up(self) -> Network:
        sh("ip", "netns", "add", self.switch)
        sh("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.switch, "link", "set", "br0", "up")
        # The root namespace's own port on the bridge (.1), for the test process.
        root_if = f"{self.tag}r"
        self._attach(root_if, None)
        sh("ip", "addr", "add", f"{self.prefix}.1/24", "dev", root_if)
        sh("ip", "link", "set", root_if, "up")
        self._links.append(root_if)
        return self

    def _attach(self, local: str, netns: str | None) -> None:
        peer = local + "s"
        sh("ip", "link", "add", local, "type", "veth", "peer", "name", peer)
        sh("ip", "link", "set", peer, "netns", self.switch)
        sh("ip", "-n", self.switch, "link", "set", peer, "master", "br0")
        sh("ip", "-n", self.switch, "link", "set", peer, "up")
        if netns:
            sh("ip", "link", "set", local, "netns", netns)

    def host(self, name: str, octet: int) -> str:
        netns = self.namespace(name)
        sh("ip", "netns", "add", netns)
        sh("ip", "-n", netns, "link", "set", "lo", "up")
        self._attach(f"{self.tag}{octet}", netns)
        address = f"{self.prefix}.{octet}"
        sh("ip", "-n", netns, "link", "set", f"{self.tag}{octet}", "name", "eth0")
        sh("ip", "-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
        sh("ip", "-n", netns, "link", "set", "eth0", "up")
        self.hosts[name] = address
        return address

    def cut_off(self, name: str, *peers: str) -> None:
        """Drop every packet between host ``name`` and these peers (both directions)."""
        for peer in peers:
            for chain, flag in (("OUTPUT", "-d"), ("INPUT", "-s")):
                sh(
                    "ip",
                    "netns",
                    "exec",
                    self.namespace(name),
                    "iptables",
                    "-A",
                    chain,
                    flag,
                    self.hosts[peer],
                    "-j",
                    "DROP",
                )

    def reconnect(self, name: str) -> None:
        for chain in ("OUTPUT", "INPUT"):
            sh("ip", "netns", "exec", self.namespace(name), "iptables", "-F", chain)

    def delay(self, milliseconds: float) -> None:
        """netem on every host's interface: each packet a host sends waits this long, so
        host-to-host one way is ``milliseconds`` and a round trip twice that."""
        for name in self.hosts:
            sh("ip", "-n", self.namespace(name), "qdisc", "replace", "dev", "eth0", "root", "netem",
               "delay", f"{milliseconds}ms")  # fmt: skip

    def no_delay(self) -> None:
        for name in self.hosts:
            sh("ip", "-n", self.namespace(name), "qdisc", "del", "dev", "eth0", "root", check=False)

    def rtt_ms(self, source: str, target: str, port: int, count: int = 5) -> float:
        """Median TCP connect time from ``source`` to ``target:port``: one round trip."""
        probe = (
            "import socket,statistics,time\n"
            "t=[]\n"
            f"for _ in range({count}):\n"
            "    s=time.perf_counter()\n"
            f"    socket.create_connection(({self.hosts[target]!r},{port}),5).close()\n"
            "    t.append((time.perf_counter()-s)*1000)\n"
            "print(statistics.median(t))"
        )
        return float(sh("ip", "netns", "exec", self.namespace(source), sys.executable, "-c", probe).stdout)

    def down(self) -> None:
        for name in list(self.hosts):
            sh("ip", "netns", "del", self.namespace(name), check=False)
        for link in self._links:
            sh("ip", "link", "del", link, check=False)
        sh("ip", "netns", "del", self.switch, check=False)
