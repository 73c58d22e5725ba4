"""
webstack's load test: concurrent delayed responses, and cancellations sent by
clients against cancellations observed by the backends.

Users (pick with the scenario, or by class name; weights with --weights):

  DelayedUser     GET /async/delay (and /async/deferred) ?seconds=S; checks the
                  body; "lateness" (how late beyond S) is its own statistic
                  (type LATENESS).
  CancellingUser  starts /async/interruptible?seconds=S and really closes its
                  connection after T < S; each abort is a CANCEL event.
  StreamingUser   reads /async/stream; abandons some streams midway (CANCEL).
  MixedUser       every demo: static (ranges, conditional), WSGI, CGI, Basic and
                  Digest as alice and bob, a session counter that must count up.

locust records a request only when it completes, and cannot see what the
server did: so each abort is fired as its own event, and the async service's
own counters are read before and after the run (webstack_load.accounting).
Run it with `make load` / `make load-ui` (loadtest/run.py); settings live in
config/locust.conf.
"""

from __future__ import annotations

import json
import os
import random
import socket
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import gevent
from locust import FastHttpUser, HttpUser, User, between, constant, events, tag, task
from locust.rpc import Message
from locust.runners import MasterRunner, WorkerRunner
from requests.auth import HTTPDigestAuth

from webstack_load import accounting, backends, report

BODY = b"Sorry to keep you waiting."
SETTINGS_SHOWN = (
    "host", "num_users", "spawn_rate", "run_time", "delay_seconds", "cancel_seconds",
    "abort_after", "stream_chunks", "stream_interval", "stream_abandon", "weights",
    "max_error_rate", "max_lateness_ms", "lateness_threshold_ms", "step_users",
    "step_seconds", "step_max_users",
)
DEMO_USERS = (("alice", "wonderland-2026"), ("bob", "builder-2026"))

if os.environ.get("WEBSTACK_SCENARIO") == "step":
    from webstack_load.shapes import StepShape  # noqa: F401  (locust finds it here)


@events.init_command_line_parser.add_listener
def _options(parser):
    group = parser.add_argument_group("webstack")
    add = group.add_argument
    add("--delay-seconds", type=float, default=2.0, env_var="WEBSTACK_DELAY_SECONDS",
        help="S of DelayedUser's /async/delay?seconds=S")
    add("--cancel-seconds", type=float, default=5.0, env_var="WEBSTACK_CANCEL_SECONDS",
        help="S of CancellingUser's /async/interruptible?seconds=S")
    add("--abort-after", type=float, default=0.5, env_var="WEBSTACK_ABORT_AFTER",
        help="T: CancellingUser closes its connection after T seconds (T < S)")
    add("--stream-chunks", type=int, default=5, env_var="WEBSTACK_STREAM_CHUNKS")
    add("--stream-interval", type=float, default=0.2, env_var="WEBSTACK_STREAM_INTERVAL")
    add("--stream-abandon", type=float, default=0.5, env_var="WEBSTACK_STREAM_ABANDON",
        help="fraction of streams abandoned midway")
    add("--weights", default="", env_var="WEBSTACK_WEIGHTS",
        help="user weights, e.g. delayed=3,cancelling=1,streaming=1,mixed=1")
    add("--stop-after", default="", env_var="WEBSTACK_STOP_AFTER",
        help="end the run after this long (30s, 2m, 1h30m): a graceful stop, the"
        " accounting, then quit. Unlike --run-time, it waits for the workers")
    add("--report-dir", default="", env_var="WEBSTACK_REPORT_DIR",
        help="where summary.json and chart.png go")
    add("--max-error-rate", type=float, default=0.0, env_var="WEBSTACK_MAX_ERROR_RATE",
        help="fail the run above this fraction of failed requests")
    add("--max-lateness-ms", type=float, default=0.0, env_var="WEBSTACK_MAX_LATENESS_MS",
        help="fail the run if lateness p99 is above this (0: not checked)")
    add("--lateness-threshold-ms", type=float, default=100.0, env_var="WEBSTACK_LATENESS_THRESHOLD_MS",
        help="step scenario: stop where lateness p99 crosses this")
    add("--step-users", type=int, default=100, env_var="WEBSTACK_STEP_USERS")
    add("--step-seconds", type=float, default=20.0, env_var="WEBSTACK_STEP_SECONDS")
    add("--step-max-users", type=int, default=10000, env_var="WEBSTACK_STEP_MAX_USERS")


def seconds(duration: str) -> float:
    """
    C{30}, C{30s}, C{2m}, C{1h30m} in seconds.
    """
    import re

    text = duration.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    if not text or parts is None:
        raise SystemExit(f"--stop-after: {duration!r} is not a duration like 30s, 2m or 1h30m")
    h, m, s = (int(g or 0) for g in parts.groups())
    return h * 3600 + m * 60 + s


def options(user):
    return user.environment.parsed_options


def fire(environment, kind, name, started, length=0, exception=None):
    environment.events.request.fire(
        request_type=kind,
        name=name,
        response_time=(time.perf_counter() - started) * 1000,
        response_length=length,
        exception=exception,
        context={},
    )


def openRequest(host: str, path: str) -> socket.socket:
    """
    A request on a connection of its own, left for the caller to read or to
    abandon (gevent's socket: locust has patched it in).
    """
    url = urlsplit(host)
    s = socket.create_connection((url.hostname, url.port or 80), timeout=60)
    s.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {url.netloc}\r\nX-Request-Id: load-{uuid.uuid4().hex[:12]}"
        "\r\nConnection: close\r\n\r\n".encode()
    )
    return s


class DelayedUser(FastHttpUser):
    weight = 3
    wait_time = constant(0)
    network_timeout = 120.0
    connection_timeout = 30.0

    @tag("delay")
    @task(3)
    def delay(self):
        self._delayed("/async/delay")

    @tag("deferred")
    @task(1)
    def deferred(self):
        self._delayed("/async/deferred")

    def _delayed(self, path):
        seconds = options(self).delay_seconds
        started = time.perf_counter()
        with self.client.get(f"{path}?seconds={seconds:g}", name=path, catch_response=True) as response:
            if response.status_code != 200 or BODY not in (response.content or b""):
                response.failure(f"status {response.status_code}, not the seed's body")
                return
        lateness = max(0.0, (time.perf_counter() - started) * 1000 - seconds * 1000)
        self.environment.events.request.fire(
            request_type="LATENESS", name=path, response_time=lateness,
            response_length=0, exception=None, context={},
        )


class CancellingUser(User):
    weight = 1
    wait_time = constant(0.1)

    @tag("cancel")
    @task
    def abandon(self):
        opts = options(self)
        name = "/async/interruptible"
        started = time.perf_counter()
        s = openRequest(self.host, f"{name}?seconds={opts.cancel_seconds:g}")
        try:
            gevent.sleep(opts.abort_after)
            s.setblocking(False)
            try:
                early = s.recv(1)
            except BlockingIOError:
                early = b""
        finally:
            s.close()
        if early:
            fire(self.environment, "CANCEL", name, started,
                 exception=RuntimeError(f"answered before the abort at {opts.abort_after:g} s"))
        else:
            fire(self.environment, "CANCEL", name, started)


class StreamingUser(User):
    weight = 1
    wait_time = constant(0.1)

    @tag("stream")
    @task
    def stream(self):
        opts = options(self)
        chunks = opts.stream_chunks
        name = "/async/stream"
        abandonAfter = random.randint(1, max(1, chunks - 1)) if random.random() < opts.stream_abandon else 0
        started = time.perf_counter()
        s = openRequest(self.host, f"{name}?chunks={chunks}&interval={opts.stream_interval:g}")
        data = b""
        try:
            while True:
                piece = s.recv(65536)
                if not piece:
                    break
                data += piece
                if abandonAfter and data.count(b"chunk ") >= abandonAfter:
                    break
        finally:
            s.close()
        if abandonAfter:
            fire(self.environment, "CANCEL", name, started, len(data))
        elif b"chunk %d of %d" % (chunks, chunks) in data:
            fire(self.environment, "STREAM", name, started, len(data))
        else:
            fire(self.environment, "STREAM", name, started, len(data),
                 exception=RuntimeError("stream ended before its last chunk"))


class MixedUser(HttpUser):
    weight = 1
    wait_time = between(0.2, 1.0)

    def on_start(self):
        self.login = random.choice(DEMO_USERS)
        self.visits = 0

    def _expect(self, path, status, check=None, **kwargs):
        with self.client.get(path, catch_response=True, **kwargs) as response:
            if response.status_code != status:
                response.failure(f"status {response.status_code}, wanted {status}")
            elif check is not None and not check(response):
                response.failure("unexpected body")
            return response

    @tag("demos")
    @task
    def static(self):
        self._expect("/static/", 200, lambda r: b"Static files" in r.content)
        self._expect("/static/large.txt", 206, lambda r: len(r.content) == 100,
                     headers={"Range": "bytes=0-99"}, name="/static/large.txt [range]")
        first = self._expect("/static/style.css", 200)
        etag = first.headers.get("ETag")
        if etag:
            self._expect("/static/style.css", 304, headers={"If-None-Match": etag},
                         name="/static/style.css [conditional]")

    @tag("demos")
    @task
    def wsgi(self):
        self._expect("/wsgi/hello", 200, lambda r: r.content == b"Hello, world!")

    @tag("demos")
    @task
    def cgi(self):
        self._expect("/cgi/date-example.sh", 200)

    @tag("demos")
    @task
    def basic(self):
        user, password = self.login
        self._expect("/auth/", 200, lambda r: f"{user}'s public_html".encode() in r.content,
                     auth=(user, password), name="/auth/ [basic]")

    @tag("demos")
    @task
    def digest(self):
        user, password = self.login
        self._expect("/auth/", 200, lambda r: f"{user}'s public_html".encode() in r.content,
                     auth=HTTPDigestAuth(user, password), name="/auth/ [digest]")

    @tag("demos")
    @task
    def session(self):
        self.visits += 1
        wanted = b"Visit #%d for you!" % self.visits
        self._expect("/session/counter", 200, lambda r: r.content == wanted)


def applyWeights(spec: str) -> None:
    classes = {"delayed": DelayedUser, "cancelling": CancellingUser,
               "streaming": StreamingUser, "mixed": MixedUser}
    for item in filter(None, (p.strip() for p in spec.split(","))):
        name, _, weight = item.partition("=")
        if name not in classes or not weight.isdigit():
            raise SystemExit(f"--weights: {item!r} is not one of {', '.join(classes)}=N")
        classes[name].weight = int(weight)


class Run:
    """
    The master's (or the single process's) view of the run: counters before
    and after, samples over time, the summary at the end.
    """

    def __init__(self, environment):
        self.environment = environment
        self.samples: list[dict] = []
        self.before = {}
        self.notes: list[str] = []
        self.usersPeak = 0
        self.sampler = None

    def abortsSent(self) -> int:
        return sum(e.num_requests for e in self.environment.stats.entries.values() if e.method == "CANCEL")

    def lateness(self, percentile: float, current: bool = False):
        entries = [e for e in self.environment.stats.entries.values() if e.method == "LATENESS"]
        if not entries or not any(e.num_requests for e in entries):
            return None
        entry = max(entries, key=lambda e: e.num_requests)
        if current:
            return entry.get_current_response_time_percentile(percentile) or 0
        return entry.get_response_time_percentile(percentile)

    def start(self):
        host = self.environment.host
        try:
            documents, self.notes = backends.readReplicas(host)
        except (OSError, ValueError, KeyError) as e:
            print(
                f"webstack: no stack answers at {host} ({e}); start it with"
                " `make up` or `make run`, or set HOST=",
                flush=True,
            )
            self.environment.process_exit_code = 2
            self.environment.runner.quit()
            return
        self.before = accounting.snapshotOf(documents)
        self.sampler = gevent.spawn(self._sample)

    def _sample(self):
        while True:
            try:
                documents, _ = backends.readReplicas(self.environment.host)
                inFlight, cancelled, completed = backends.inFlight(documents)
            except (OSError, ValueError, KeyError):
                inFlight = cancelled = completed = 0
            users = self.environment.runner.user_count if self.environment.runner else 0
            self.usersPeak = max(self.usersPeak, users)
            self.samples.append({
                "t": time.time(), "users": users, "in_flight": inFlight,
                "cancelled": cancelled - self._baseline("cancelled"),
                "completed": completed, "aborts_sent": self.abortsSent(),
                "lateness_p99_ms": self.lateness(0.99, current=True) or 0,
            })
            gevent.sleep(1.0)

    def _baseline(self, count):
        return sum(d.get(count, 0) for endpoints in self.before.values() for d in endpoints.values())

    def finish(self):
        if self.sampler is None:
            return None  # never started: no stack
        self.sampler.kill()
        # Settle: the backends must have seen the last connections close, and
        # a master must have the workers' last statistics (they report every
        # few seconds, and may still be finishing tasks within stop-timeout).
        distributed = isinstance(self.environment.runner, MasterRunner)
        patience = (self.environment.stop_timeout or 0) + 15 if distributed else 10
        deadline = time.time() + patience
        lastSent, stableSince = -1, time.time()
        while True:
            documents, notes = backends.readReplicas(self.environment.host)
            sent = self.abortsSent()
            if sent != lastSent:
                lastSent, stableSince = sent, time.time()
            settled = backends.inFlight(documents)[0] == 0 and (
                not distributed or time.time() - stableSince >= 4
            )
            if settled or time.time() > deadline:
                break
            gevent.sleep(0.5)
        books = accounting.Accounting(
            self.abortsSent(), self.before, accounting.snapshotOf(documents), self.notes + notes
        )
        stats = self.environment.stats.total
        opts = self.environment.parsed_options
        errors: dict[str, int] = {}
        for error in self.environment.stats.errors.values():
            key = f"{error.method} {error.name}: {error.error}"
            errors[key] = errors.get(key, 0) + error.occurrences
        cancellation = books.summary()
        summary = {
            "users_peak": self.usersPeak,
            "concurrency_peak": max((s["in_flight"] for s in self.samples), default=0),
            "requests": stats.num_requests,
            "failures": stats.num_failures,
            "throughput_rps": stats.total_rps,
            "lateness_p50_ms": self.lateness(0.5),
            "lateness_p99_ms": self.lateness(0.99),
            "errors": errors,
            "cancellation": cancellation,
            "step_threshold_users": getattr(self.environment, "webstackThresholdUsers", None),
            "steps": getattr(self.environment, "webstackSteps", []),
            "settings": {
                k: getattr(opts, k, None)
                for k in SETTINGS_SHOWN
            },
        }
        broken = []
        if stats.num_requests and stats.num_failures / stats.num_requests > opts.max_error_rate:
            broken.append(f"{stats.num_failures} failed requests (max rate {opts.max_error_rate:g})")
        if cancellation["unaccounted"]:
            broken.append(f"{cancellation['unaccounted']} aborts never cancelled by a backend")
        if cancellation["completed_after_abort"]:
            broken.append(f"{cancellation['completed_after_abort']} aborted requests worked to the end")
        if opts.max_lateness_ms and (summary["lateness_p99_ms"] or 0) > opts.max_lateness_ms:
            broken.append(f"lateness p99 {summary['lateness_p99_ms']} ms > {opts.max_lateness_ms:g} ms")
        summary["broken"] = broken
        summary["passed"] = not broken
        if opts.report_dir:
            directory = Path(opts.report_dir)
            directory.mkdir(parents=True, exist_ok=True)
            report.writeSummary(directory, summary)
            (directory / "samples.json").write_text(json.dumps(self.samples))
            report.writeChart(directory, self.samples)
        if not opts.headless:
            print(report.table(summary), flush=True)  # run.py prints it for headless runs
        return summary


@events.init.add_listener
def _init(environment, **kwargs):
    if environment.parsed_options is not None:
        applyWeights(environment.parsed_options.weights)
    environment.webstackRun = None
    environment.webstackSteps = []
    environment.webstackStop = lambda: stopGracefully(environment)


@events.test_start.add_listener
def _testStart(environment, **kwargs):
    if isinstance(environment.runner, WorkerRunner):
        return
    environment.webstackRun = Run(environment)
    environment.webstackRun.start()
    stopAfter = environment.parsed_options.stop_after
    after = seconds(stopAfter) if stopAfter else 0.0
    if after > 0:
        gevent.spawn(_endRun, environment, after)


def _endRun(environment, after: float) -> None:
    gevent.sleep(after)
    stopGracefully(environment)
    environment.runner.quit()


def stopGracefully(environment) -> None:
    """
    Stop the users (each finishes its task within stop-timeout), workers
    included, which fires test_stop and so the final accounting; then tell
    the workers to quit.  locust's own --run-time and shape endings quit a
    distributed master before its workers have stopped.
    """
    runner = environment.runner
    workers = [w.id for w in runner.clients.all] if isinstance(runner, MasterRunner) else []
    runner.stop()
    # A worker that reported it stopped is no longer one of the master's
    # clients, so quit() would not reach it: tell each one directly.
    for worker in workers:
        runner.server.send_to_client(Message("quit", None, worker))


@events.test_stop.add_listener
def _testStop(environment, **kwargs):
    run = getattr(environment, "webstackRun", None)
    if run is None or isinstance(environment.runner, WorkerRunner):
        return
    environment.webstackSummary = run.finish()
    environment.webstackRun = None


@events.quitting.add_listener
def _quitting(environment, **kwargs):
    summary = getattr(environment, "webstackSummary", None)
    if summary is not None and not summary["passed"]:
        environment.process_exit_code = 1
