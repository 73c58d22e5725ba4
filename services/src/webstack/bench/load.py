"""
Load for C{make bench} that is not the lateness clients (L{lateness}):
throughput with wrk, the clients that start requests and leave on purpose
(aborts), and a fixed count of keep-alive requests (instructions).
"""

from __future__ import annotations

import http.client
import math
import re
import socket
import subprocess
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


def wrkThroughput(wrk: str, url: str, seconds: float, connections: int = 64) -> dict:
    """
    Requests per second of C{url} over C{seconds}, by wrk on one thread.
    """
    result = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    figures = parseWrk(result.stdout)
    if not figures["requests"]:
        figures["error"] = (result.stdout + result.stderr).strip()[-300:]
    return {**figures, "connections": connections, "seconds": seconds}


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
