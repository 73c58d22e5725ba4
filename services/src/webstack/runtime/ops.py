# -*- test-case-name: tests.test_runtime -*-
"""
The operators' endpoints every service answers: C{healthz} (alive),
C{readyz} (ready, and not draining) and C{metrics} (Prometheus).

The runtime mounts them in each service's tree, at the path its L{App}
names (C{/} for a backend, C{/-/} for the front, whose root is its routes),
and labels their requests in the metrics by their own paths, so no
C{makeApp} adds them by hand and none can leave one out.

@see: L{webstack.runtime.plugin.App.opsPath}
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from twisted.web.resource import Resource

from .health import Health, LivenessResource, ReadinessResource
from .metrics import MetricsResource


def opsResources(
    health: Health, registry: CollectorRegistry, metricsDir: str | None
) -> dict[bytes, Resource]:
    """
    C{healthz}, C{readyz} and C{metrics} of one service, by name.
    """
    return {
        b"healthz": LivenessResource(),
        b"readyz": ReadinessResource(health),
        b"metrics": MetricsResource(registry, metricsDir),
    }


def mountOps(root: Resource, path: str, resources: dict[bytes, Resource]) -> list[str]:
    """
    Put C{resources} under C{path} in the tree of C{root}, and return their
    paths, for the route labels.

    @param path: where they go: C{"/"} or C{"/a/b/"}.  A segment that is no
        static child yet (L{Resource.putChild}) is made a plain L{Resource}.
    @raise ValueError: if C{path} does not start and end with C{/}.
    """
    if not (path.startswith("/") and path.endswith("/")):
        raise ValueError(f"the ops path {path!r} must start and end with /")
    parent = root
    for segment in filter(None, path.split("/")):
        name = segment.encode("ascii")
        child = parent.getStaticEntity(name)
        if child is None:
            child = Resource()
            parent.putChild(name, child)
        parent = child
    for name, resource in resources.items():
        parent.putChild(name, resource)
    return [path + name.decode("ascii") for name in resources]
