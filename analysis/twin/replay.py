"""The twin's two programs, each run inside its namespace by measure.py.

    python replay.py receive --plan plan.json --port P --iface IF --out capture.json
    python replay.py send    --plan plan.json --host H --port P --out sends.json

plan.json: {"devices": {"<device>": [[at_s, size_bytes], ...]}} -- each device's uplink messages in
the order they leave its queue, `at_s` the simulated moment each was enqueued.

The sender holds one persistent TCP connection per device (TCP_NODELAY, as request/response clients
set it), writes a 4-byte hello with the device number, waits for the link to be idle, then writes
every message's bytes at its `at_s` after a common start, in real time, and records the moment of
each write. A socket's queue is the device's FIFO. The receiver drains every connection and
captures the packets arriving at its interface (AF_PACKET with kernel timestamps, so Python's
scheduling does not enter the times); it writes each data packet's source port, sequence number,
payload and frame length and arrival time. Times are CLOCK_REALTIME nanoseconds in both programs.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import struct
import sys
import threading
import time

HELLO = struct.Struct("!I")
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
ETH_P_IP, PACKET_OUTGOING = 0x0800, 4
IDLE_BEFORE_S = 1.0  # the handshakes' packets are long gone when the first message is written


def _plan(path: str) -> dict[int, list[tuple[float, int]]]:
    with open(path) as f:
        devices = json.load(f)["devices"]
    return {int(d): [(float(at), int(size)) for at, size in msgs] for d, msgs in devices.items()}


# -- sender -----------------------------------------------------------------------------------


def send(plan: dict[int, list[tuple[float, int]]], host: str, port: int, timeout_s: float) -> dict:
    socks = {}
    for device in plan:
        s = socket.create_connection((host, port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        s.sendall(HELLO.pack(device))
        s.setblocking(False)
        socks[device] = s
    events = sorted((at, device, i, size) for device, msgs in plan.items() for i, (at, size) in enumerate(msgs))
    payload = bytes(range(256)) * 256  # incompressible enough; nothing on the path compresses
    pending: dict[int, list[bytes]] = {d: [] for d in plan}  # each device's messages not yet in the kernel
    written: dict[int, list[int]] = {d: [0] * len(plan[d]) for d in plan}
    time.sleep(IDLE_BEFORE_S)
    t0 = time.time_ns() + 100_000_000
    deadline = time.monotonic() + timeout_s
    k = 0
    while k < len(events) or any(pending.values()):
        if time.monotonic() > deadline:
            raise TimeoutError("the sender ran past its timeout")
        now = time.time_ns()
        while k < len(events) and t0 + int(events[k][0] * 1e9) <= now:
            _, device, i, size = events[k]
            written[device][i] = time.time_ns()
            pending[device].append(payload[:size] if size <= len(payload) else bytes(size))
            k += 1
            _flush(socks, pending)  # one write per message, at its moment
        _flush(socks, pending)  # what a full socket buffer held back
        wait = (t0 + int(events[k][0] * 1e9) - time.time_ns()) / 1e9 if k < len(events) else 0.05
        blocked = [socks[d] for d, buf in pending.items() if buf]
        if wait > 0:
            # sleep in select (microsecond timeouts) until the next write or a full socket drains;
            # the last 200 us are spun so a write is late by microseconds, not a timer slack
            select.select([], blocked, [], max(0.0, wait - 2e-4))
    for s in socks.values():
        s.setblocking(True)
        s.shutdown(socket.SHUT_WR)
    for s in socks.values():  # the receiver closes when it has every byte
        s.settimeout(max(1.0, deadline - time.monotonic()))
        while s.recv(4096):
            pass
        s.close()
    return {"t0_ns": t0, "written_ns": {str(d): w for d, w in written.items()}}


def _flush(socks: dict[int, socket.socket], pending: dict[int, list[bytes]]) -> None:
    """Write each device's waiting messages, one send() each, as far as its socket buffer takes them."""
    for device, msgs in pending.items():
        while msgs:
            try:
                n = socks[device].send(msgs[0])
            except BlockingIOError:
                break
            if n < len(msgs[0]):
                msgs[0] = msgs[0][n:]
                break
            msgs.pop(0)


# -- receiver ---------------------------------------------------------------------------------


class Capture(threading.Thread):
    """TCP data packets arriving at `iface` for `port`, with the kernel's receive timestamps."""

    def __init__(self, iface: str, port: int):
        super().__init__(daemon=True)
        self.port, self.packets, self.stop = port, [], threading.Event()
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
        self.sock.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE: no capture drop
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.bind((iface, 0))
        self.sock.settimeout(0.1)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                frame, anc, _, addr = self.sock.recvmsg(65536, 64)
            except TimeoutError:
                continue
            if addr[2] == PACKET_OUTGOING:
                continue
            ts = next((struct.unpack("qq", data[:16]) for level, kind, data in anc
                       if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS), None)
            row = _tcp(frame, self.port)
            if row is not None and ts is not None:
                self.packets.append([*row, ts[0] * 1_000_000_000 + ts[1], len(frame)])

    def drops(self) -> int:
        """Packets the kernel dropped from this capture (PACKET_STATISTICS)."""
        stats = self.sock.getsockopt(263, 6, 8)  # SOL_PACKET, PACKET_STATISTICS: (packets, drops)
        return struct.unpack("II", stats)[1]


def _tcp(frame: bytes, port: int) -> tuple[int, int, int, bool] | None:
    """(source port, sequence number, payload bytes, SYN) of a TCP segment to `port`, else None."""
    ip = frame[14:]
    if len(ip) < 20 or ip[9] != 6:
        return None
    ihl, total = (ip[0] & 0x0F) * 4, struct.unpack("!H", ip[2:4])[0]
    tcp = ip[ihl:]
    sport, dport, seq = struct.unpack("!HHI", tcp[:8])
    if dport != port:
        return None
    data_offset, flags = (tcp[12] >> 4) * 4, tcp[13]
    return sport, seq, total - ihl - data_offset, bool(flags & 0x02)


def receive(plan: dict[int, list[tuple[float, int]]], port: int, iface: str, timeout_s: float) -> dict:
    expected = {d: HELLO.size + sum(size for _, size in msgs) for d, msgs in plan.items()}
    capture = Capture(iface, port)
    capture.start()
    server = socket.create_server(("0.0.0.0", port))
    print("ready", flush=True)
    server.settimeout(timeout_s)
    streams = {}  # connection -> its peer port, which names the stream in the capture
    for _ in plan:
        conn, (_, peer_port) = server.accept()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        streams[conn] = peer_port
    got, head = dict.fromkeys(streams.values(), 0), {p: b"" for p in streams.values()}
    ports: dict[int, int] = {}  # peer port -> device, from the hello
    deadline = time.monotonic() + timeout_s
    while streams:
        if time.monotonic() > deadline:
            raise TimeoutError(f"received {sum(got.values())} of {sum(expected.values())} bytes")
        ready, _, _ = select.select(list(streams), [], [], 0.5)
        for conn in ready:
            peer, data = streams[conn], conn.recv(1 << 20)
            if len(head[peer]) < HELLO.size:
                head[peer] += data[:HELLO.size - len(head[peer])]
                if len(head[peer]) == HELLO.size:
                    ports[peer] = HELLO.unpack(head[peer])[0]
            got[peer] += len(data)
            if not data or (peer in ports and got[peer] >= expected[ports[peer]]):
                conn.close()
                del streams[conn]
    time.sleep(0.2)  # the last packets' capture
    capture.stop.set()
    capture.join()
    return {"ports": {str(p): d for p, d in ports.items()}, "packets": capture.packets,
            "capture_drops": capture.drops()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("role", choices=["send", "receive"])
    ap.add_argument("--plan", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="")
    ap.add_argument("--iface", default="")
    ap.add_argument("--out", required=True)
    ap.add_argument("--timeout-s", type=float, default=600.0)
    a = ap.parse_args(argv)
    plan = _plan(a.plan)
    try:
        result = send(plan, a.host, a.port, a.timeout_s) if a.role == "send" else \
            receive(plan, a.port, a.iface, a.timeout_s)
    except (OSError, TimeoutError) as e:
        print(f"{a.role}: {e}", file=sys.stderr)
        return 1
    with open(a.out, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
