# -*- test-case-name: tests.test_front_units -*-
"""
The landing page at C{/}: every demo, the seeds it shows, links to try, and
the live state of its replicas (as the front's resolver, ejections and
C{/readyz} probes see them); and the links of an operator's tools: the
front's live dashboard, Prometheus and locust's web UI.  JSON when the
client asks for it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape
from typing import Any

from twisted.web.resource import Resource

from webstack.registry import Route
from webstack.registry import route as describedRoute
from webstack.runtime.errors import wantsJSON

from .metrics import workersView

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>webstack</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>
body{{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}}
h1{{margin-bottom:0}} .sub{{color:#666;margin-top:0}}
section{{border-top:1px solid #ddd;padding:.6rem 0}} h2{{font-size:1.15rem;margin:.3rem 0}}
code{{background:#f3f3f3;padding:0 .25em}} .ok{{color:#17773a}} .bad{{color:#b3261e}} .off{{color:#777}}
ul{{margin:.3rem 0}} small{{color:#666}}
</style></head><body>
<h1>webstack</h1>
<p class="sub">The "Twisted Web in 60 seconds" demos, each its own service, behind a
streaming Twisted reverse proxy. Front: <a href="/-/healthz">/-/healthz</a>
<a href="/-/readyz">/-/readyz</a> <a href="/-/metrics">/-/metrics</a></p>
{tools}
{sections}
</body></html>
"""

# Whether locust's UI answers is for the browser to find out: it is the
# browser that follows the link, and the front may not reach it at all (in
# containers, 127.0.0.1 is the front's own).  A no-cors fetch settles on any
# answer and fails only when nothing answers.
_PROBE = """<script>
document.querySelectorAll("[data-probe]").forEach(function (note) {
  function say(state, text, style) {
    note.dataset.state = state; note.textContent = text; note.className = style;
  }
  fetch(note.dataset.probe, {mode: "no-cors", cache: "no-store"}).then(
    function () { say("running", "running", "ok"); },
    function () { say("down", "not running: make load-ui starts it", "off"); });
});
</script>"""


@dataclass(frozen=True)
class Links:
    """
    The operator's tools the landing page links to.

    @ivar prometheus: Prometheus's UI as a browser reaches it (C{""}: none).
    @ivar locust: locust's web UI as a browser reaches it (C{""}: none).
    @ivar sampler: the dashboard's L{Sampler<webstack.front.dashboard.Sampler>},
        which knows whether the front's Prometheus answers.
    """

    prometheus: str = ""
    locust: str = ""
    sampler: Any = None

    def describe(self) -> dict[str, dict[str, str]]:
        tools = {"dashboard": {"url": "/-/dashboard", "state": "running"}}
        if self.prometheus:
            if self.sampler is None or self.sampler.prometheusState == "off":
                state = "the dashboard does not ask it (front.prometheus_url is not set)"
            elif self.sampler.prometheusState == "ok":
                state = "the dashboard's source"
            elif self.sampler.prometheusState == "waiting":
                state = "the dashboard has not asked it yet"
            else:
                state = f"not answering the front: {self.sampler.prometheusDetail}"
            tools["prometheus"] = {"url": self.prometheus, "state": state}
        if self.locust:
            tools["locust"] = {"url": self.locust, "state": "unknown to the front"}
        return tools


def _state(status: dict | None, configured: bool) -> tuple[str, str]:
    if not configured:
        return "off", "not part of this stack yet (no upstream configured)"
    assert status is not None
    total = len(status["replicas"])
    if total == 0:
        return "bad", "no replica resolved yet"
    up = status["available"]
    return ("ok" if up else "bad"), f"{up} of {total} replica(s) available"


class LandingPage(Resource):
    isLeaf = True

    def __init__(
        self, routes, replicaSets, gauges=None, metricsDir=None, links: Links | None = None
    ) -> None:
        """
        @param gauges: the L{ReplicaGauges} this worker publishes.
        @param metricsDir: with several workers, where they all publish:
            the page then shows the replicas as the whole front sees them
            (requests in flight summed over the workers, a replica up only
            while every worker sends to it), whichever worker answers.
        @param links: the operator's tools to link to.
        """
        super().__init__()
        self._routes = routes
        self._sets = replicaSets
        self._gauges = gauges
        self._metricsDir = metricsDir
        self._links = links or Links()

    def _status(self, name: str, replicaSet, shared) -> dict:
        status = replicaSet.status()
        if shared is None:
            return status
        for replica in status["replicas"]:
            seen = shared.get((name, replica["address"]))
            if seen:
                replica.update(seen)
        status["available"] = sum(1 for r in status["replicas"] if r["available"])
        return status

    def describe(self) -> list[dict[str, object]]:
        demos = []
        shared = None
        if self._metricsDir is not None and self._gauges is not None:
            self._gauges.publish()
            _, shared = workersView(self._metricsDir)
        for route in self._routes:
            # A route added in stack.toml alone is listed by its name.
            demo = describedRoute(route.name) or Route(route.name, route.prefix, route.name, ())
            replicaSet = self._sets[route.name]
            status = (
                self._status(route.name, replicaSet, shared)
                if replicaSet.configured
                else None
            )
            state, summary = _state(status, replicaSet.configured)
            demos.append(
                {
                    "route": route.name,
                    "prefix": route.prefix,
                    "title": demo.title,
                    "seeds": list(demo.seeds),
                    "note": demo.note or None,
                    "examples": [{"path": p, "what": w} for p, w in demo.examples],
                    "state": state,
                    "summary": summary,
                    "replicas": status["replicas"] if status else [],
                }
            )
        return demos

    def render_GET(self, request):
        request.setHeader(b"cache-control", b"no-store")
        demos = self.describe()
        if wantsJSON(request):
            request.setHeader(b"content-type", b"application/json")
            document = {"demos": demos, "tools": self._links.describe()}
            return json.dumps(document, indent=1).encode("utf-8") + b"\n"
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        sections = []
        for demo in demos:
            served = demo["state"] != "off"
            examples = "".join(
                f'<li><a href="{escape(e["path"])}">{escape(e["path"])}</a>'
                f' <small>{escape(e["what"])}</small></li>'
                if served
                else f'<li><code>{escape(e["path"])}</code></li>'
                for e in demo["examples"]
            )
            seeds = "; ".join(escape(s) for s in demo["seeds"]) or "-"
            replicas = ", ".join(
                f'{escape(r["address"])} ({"up" if r["available"] else "down"},'
                f' {r["in_flight"]} in flight)'
                for r in demo["replicas"]
            )
            sections.append(
                f'<section><h2>{escape(demo["title"])} <code>{escape(demo["prefix"])}</code></h2>'
                f'<div class="{demo["state"]}">{escape(demo["summary"])}'
                f'{" &mdash; " + replicas if replicas else ""}</div>'
                f"<div><small>seeds: {seeds}</small></div>"
                + (f'<div class="bad">{escape(demo["note"])}</div>' if demo["note"] else "")
                + f"<ul>{examples}</ul></section>"
            )
        return _PAGE.format(
            tools=self._tools(), sections="\n".join(sections)
        ).encode("utf-8")

    def _tools(self) -> str:
        tools = self._links.describe()
        items = [
            '<li><a id="dashboard" href="/-/dashboard">Live dashboard</a>'
            " <small>request rate, p99, in flight, cancellations, 5xx and replicas"
            " per route, every second</small></li>"
        ]
        if "prometheus" in tools:
            prometheus = tools["prometheus"]
            items.append(
                f'<li><a id="prometheus" href="{escape(prometheus["url"])}">Prometheus</a>'
                f' <small>{escape(prometheus["state"])}</small></li>'
            )
        probe = ""
        if "locust" in tools:
            url = escape(tools["locust"]["url"])
            items.append(
                f'<li><a id="locust" href="{url}">locust</a> <small>load with a web UI:'
                f' <span id="locust-state" data-probe="{url}">checking&hellip;</span>'
                "</small></li>"
            )
            probe = _PROBE
        return f'<section><h2>Watch it</h2><ul>{"".join(items)}</ul>{probe}</section>'

