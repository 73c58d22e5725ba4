"""
Load for C{make bench}: throughput with wrk, and Python asyncio clients that
hold thousands of delayed requests or abort them on purpose.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def wrkThroughput(url: str, seconds: float, connections: int = 64) -> dict:
    """
    Requests per second of C{url} over C{seconds}, by wrk on one thread.
    """
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit(
            "make bench needs wrk for throughput (Debian: apt-get install wrk)"
        )
    result = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    out = result.stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socketErrors = re.search(r"Socket errors: (.*)", out)
    return {
        "requests_per_second": float(rate.group(1)) if rate else 0.0,
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socketErrors.group(1) if socketErrors else "none",
        "connections": connections,
        "seconds": seconds,
    }


@dataclass
class HeldResult:
    sent: int = 0
    succeeded: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    completions: list[float] = field(default_factory=list)

    def fail(self, kind: str) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + 1

    def summary(self) -> dict:
        return {
            "sent": self.sent,
            "succeeded": self.succeeded,
            "failures": self.failures,
            "completion_p50_s": percentile(self.completions, 50),
            "completion_p99_s": percentile(self.completions, 99),
            "completion_max_s": max(self.completions) if self.completions else None,
        }


async def _one(port: int, path: str, result: HeldResult, timeout: float) -> None:
    start = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), timeout
        )
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode()
        )
        data = await asyncio.wait_for(reader.read(), timeout)
        writer.close()
    except asyncio.TimeoutError:
        result.fail("timeout")
        return
    except OSError as e:
        result.fail(type(e).__name__)
        return
    if data.startswith(b"HTTP/1.1 200") and b"Sorry to keep you waiting." in data:
        result.succeeded += 1
        result.completions.append(time.monotonic() - start)
    else:
        result.fail(data[:12].decode("ascii", "replace") or "empty")


async def _hold(port: int, path: str, count: int, ramp: float, timeout: float) -> HeldResult:
    result = HeldResult(sent=count)
    batches = max(1, int(ramp / 0.05))
    size = -(-count // batches)
    tasks = []
    for start in range(0, count, size):
        for _ in range(min(size, count - start)):
            tasks.append(asyncio.ensure_future(_one(port, path, result, timeout)))
        await asyncio.sleep(ramp / batches)
    await asyncio.gather(*tasks)
    return result


def holdConcurrent(port: int, path: str, count: int, ramp: float, timeout: float) -> HeldResult:
    """
    Open C{count} connections over C{ramp} seconds, each with one request
    for C{path}, all held at once; time each one from its own send.
    """
    return asyncio.run(_hold(port, path, count, ramp, timeout))


def openAndAbort(port: int, path: str, ids: list[str]) -> dict[str, socket.socket]:
    """
    Start one request per id on its own connection; return the sockets.
    """
    sockets = {}
    for requestId in ids:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(
            f"GET {path} HTTP/1.1\r\nHost: bench\r\nX-Request-Id: {requestId}\r\n\r\n".encode()
        )
        sockets[requestId] = s
    return sockets


def closeAll(sockets: dict[str, socket.socket], spacing: float) -> dict[str, float]:
    """
    Close every socket (the client leaves), one every C{spacing} seconds, as
    independent clients would; return each one's wall-clock close time.
    """
    closedAt = {}
    for requestId, s in sockets.items():
        s.close()
        closedAt[requestId] = time.time()
        time.sleep(spacing)
    return closedAt
