"""
Load for C{make bench} that is not the lateness clients (L{lateness}):
throughput with wrk, the clients that start requests and leave on purpose
(aborts), and a fixed count of keep-alive requests (instructions).
"""

from __future__ import annotations

import http.client
import math
import os
import re
import socket
import subprocess
import tempfile
import threading
import time


def percentile(values: list[float], p: float) -> float | None:
    """
    The nearest-rank C{p}th percentile of C{values} (C{None} if empty): a
    value that was measured, never one interpolated between two.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = math.ceil(p / 100 * len(ordered))
    return ordered[min(len(ordered), max(1, rank)) - 1]


def parseWrk(out: str) -> dict:
    """
    The figures of wrk's report the bench uses.
    """
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    count = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socketErrors = re.search(r"Socket errors: (.*)", out)
    return {
        "requests_per_second": float(rate.group(1)) if rate else 0.0,
        "requests": int(count.group(1)) if count else 0,
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socketErrors.group(1).strip() if socketErrors else "none",
    }


def runMeasured(command: list[str], timeout: float) -> tuple[str, float]:
    """
    Run C{command} to its end (killed after C{timeout} seconds); return its
    output (standard output, then error) and the CPU seconds it used, user
    and system, as the kernel counted them when it was reaped (C{wait4}):
    the load generator's own share of the cores, which the bench reports
    beside the servers'.
    """
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        killer = threading.Timer(timeout, process.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            killer.cancel()
        # Reaped here, not by Popen: tell it, so it does not wait again.
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    return text, usage.ru_utime + usage.ru_stime


def wrkThroughput(wrk: str, url: str, seconds: float, connections: int = 64) -> dict:
    """
    Requests per second of C{url} over C{seconds}, by wrk on one thread,
    and the CPU seconds wrk itself used (C{client_cpu_seconds}).
    """
    out, cpu = runMeasured(
        [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", url], timeout=seconds + 60
    )
    figures = parseWrk(out)
    if not figures["requests"]:
        figures["error"] = out.strip()[-300:]
    return {**figures, "client_cpu_seconds": cpu, "connections": connections, "seconds": seconds}


def openAndAbort(port: int, path: str, ids: list[str]) -> dict[str, socket.socket]:
    """
    Start one request per id on its own connection; return the sockets.
    """
    sockets = {}
    try:
        for requestId in ids:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            sockets[requestId] = s
            s.sendall(
                f"GET {path} HTTP/1.1\r\nHost: bench\r\nX-Request-Id: {requestId}\r\n\r\n".encode()
            )
    except OSError:
        for s in sockets.values():
            s.close()
        raise
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


def keepAliveRequests(port: int, path: str, count: int, connections: int) -> dict:
    """
    Exactly C{count} GETs of C{path}, spread over C{connections} keep-alive
    connections each sending its next request when the last is answered:
    a fixed amount of work, for counters that count work rather than time
    (L{webstack.bench.instructions}).
    """
    statuses: dict[int, int] = {}
    errors: list[str] = []
    lock = threading.Lock()

    def client(share: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            for _ in range(share):
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                with lock:
                    statuses[response.status] = statuses.get(response.status, 0) + 1
        except (OSError, http.client.HTTPException) as e:
            with lock:
                errors.append(f"{type(e).__name__}: {e}")
        finally:
            connection.close()

    shares = [count // connections + (1 if i < count % connections else 0) for i in range(connections)]
    threads = [threading.Thread(target=client, args=(share,), daemon=True) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    return {"statuses": statuses, "errors": errors}
