"""The twin's network: two network namespaces (device side, cloud side) joined by a veth pair, the
device side's egress shaped to the link rate by one HTB class.

HTB with a one-byte bucket is a pacer: it releases a packet when the class has a non-negative token
balance and then charges the packet's length, so each packet leaves at the moment its transmission
would begin on a serial link of that rate (a token-bucket shaper with a bucket of a full packet or
more would let packets out early after each idle period). The veth then delivers it at once; the
receiver adds the packet's serialisation (measure.py). GSO is off (one segment per packet) so the
shaper charges and the capture sees real packets, as on a device's radio.

Everything made here is removed on exit, on an exception and on SIGTERM (the caller's handler);
namespaces left by a run that was killed outright are removed by the next one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess

PREFIX = "cstwin"
DEVICE_ADDR, CLOUD_ADDR = "10.77.0.1", "10.77.0.2"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def unavailable() -> str | None:
    """Why the twin cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (ip netns, tc)"
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not found (iproute2)"
    try:
        with Lab(1_000_000):
            pass
    except (OSError, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        return f"network namespaces or HTB unavailable: {detail.strip()}"
    return None


def remove_stale() -> list[str]:
    """Delete the namespaces of twin runs whose process is gone; returns their names."""
    removed = []
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if not name.startswith(PREFIX + "-"):
            continue
        pid = name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            _ip("netns", "del", name, check=False)
            removed.append(name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lab:
    """`with Lab(rate_bps) as lab:` two namespaces, a veth pair, the device side shaped to rate_bps.
    `lab.start(side, argv)` runs a process inside a namespace; all are killed on exit."""

    def __init__(self, rate_bps: int, queue_packets: int = 100_000):
        self.rate_bps, self.queue_packets = int(rate_bps), queue_packets
        pid = os.getpid()
        self.ns = {"device": f"{PREFIX}-dev-{pid}", "cloud": f"{PREFIX}-cloud-{pid}"}
        self.ifname = {"device": f"ctd{pid}"[:15], "cloud": f"ctc{pid}"[:15]}
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> Lab:
        remove_stale()
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _build(self) -> None:
        dev, cloud = self.ns["device"], self.ns["cloud"]
        dif, cif = self.ifname["device"], self.ifname["cloud"]
        _ip("netns", "add", dev)
        _ip("netns", "add", cloud)
        _ip("link", "add", dif, "netns", dev, "type", "veth", "peer", "name", cif, "netns", cloud)
        for side, addr in (("device", DEVICE_ADDR), ("cloud", CLOUD_ADDR)):
            ns, ifname = self.ns[side], self.ifname[side]
            _ip("-n", ns, "link", "set", ifname, "gso_max_segs", "1", "gso_max_size", "1500")
            _ip("-n", ns, "addr", "add", f"{addr}/30", "dev", ifname)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", ifname, "up")
        rate = f"{self.rate_bps}bit"
        tc = ["tc", "-n", dev]
        for cmd in (["qdisc", "add", "dev", dif, "root", "handle", "1:", "htb", "default", "1"],
                    ["class", "add", "dev", dif, "parent", "1:", "classid", "1:1", "htb", "rate", rate, "ceil",
                     rate, "burst", "1", "cburst", "1"],
                    ["qdisc", "add", "dev", dif, "parent", "1:1", "handle", "10:", "pfifo", "limit",
                     str(self.queue_packets)]):
            subprocess.run(tc + cmd, capture_output=True, text=True, check=True)

    def start(self, side: str, argv: list[str], **popen) -> subprocess.Popen:
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns[side], *argv], **popen)
        self.procs.append(proc)
        return proc

    def shaper_stats(self) -> str:
        """tc's counters of the shaping class (sent, dropped, overlimits)."""
        out = subprocess.run(["tc", "-n", self.ns["device"], "-s", "class", "show", "dev", self.ifname["device"]],
                             capture_output=True, text=True, check=False)
        return out.stdout

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        self.procs.clear()
        for ns in self.ns.values():  # the veth pair goes with its namespaces
            _ip("netns", "del", ns, check=False)

    def names(self) -> list[str]:
        return list(self.ns.values())


def namespaces() -> list[str]:
    """Every twin namespace present now (a test checks none is left behind)."""
    lines = _ip("netns", "list", check=False).stdout.splitlines()
    return [line.split()[0] for line in lines if line.startswith(PREFIX + "-")]
