"""
One place per fact: L{webstack.registry} names the services, and everything
written by hand that names them too (C{config/stack.toml},
C{docker-compose.yml}, the README, each package's C{SECTION}) must agree with
it.  Adding a service: each failure here says what is missing where.
"""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins

from webstack import registry

ROOT = Path(__file__).resolve().parents[2]
STACK = tomllib.loads((ROOT / "config" / "stack.toml").read_text())
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
# Compose services that are not the stack's own (the load generator's).
TOOLS = {
    name for name, spec in COMPOSE["services"].items() if spec.get("profiles")
}


def owner(routeName: str) -> registry.Service:
    [found] = [s for s in registry.BACKENDS if routeName in {r.name for r in s.routes}]
    return found


def test_namesAndPrefixesAreUnique():
    names = [s.name for s in registry.SERVICES]
    assert len(set(names)) == len(names)
    routes = [r.name for r in registry.ROUTES]
    assert len(set(routes)) == len(routes)
    prefixes = [r.prefix for r in registry.ROUTES]
    assert len(set(prefixes)) == len(prefixes)
    assert all(p.startswith("/") and p.endswith("/") for p in prefixes)
    assert registry.FRONT.name == "front" and not registry.FRONT.routes


@pytest.mark.parametrize("service", registry.SERVICES, ids=lambda s: s.name)
def test_eachPackageIsTheServiceItNames(service):
    module = importlib.import_module(service.module)
    assert module.SECTION == service.name
    assert callable(module.makeApp)


def test_twistdFindsAPluginPerService():
    import twisted.plugins

    found = {maker.tapname for maker in getPlugins(IServiceMaker, twisted.plugins)}
    assert {s.plugin for s in registry.SERVICES} <= found


# config/stack.toml


@pytest.mark.parametrize("service", registry.SERVICES, ids=lambda s: s.name)
def test_stackTomlHasEachServiceOnItsPort(service):
    table = STACK.get(service.name)
    assert table is not None, f"config/stack.toml has no [{service.name}]"
    assert table["listen"] == f"tcp:{service.port}:interface=127.0.0.1"


def test_stackTomlHasNoServiceTheRegistryLacks():
    known = {s.name for s in registry.SERVICES} | {"runtime"}
    assert set(STACK) <= known


def test_stackTomlRoutesAreTheRegistrysRoutes():
    routes = STACK["front"]["routes"]
    assert set(routes) == {r.name for r in registry.ROUTES}
    for route in registry.ROUTES:
        table = routes[route.name]
        service = owner(route.name)
        assert table["prefix"] == route.prefix
        assert table["upstream"] == f"127.0.0.1:{service.port}"
        assert table.get("service", route.name) == service.name, (
            f"front.routes.{route.name} needs service = {service.name!r}"
        )


# docker-compose.yml


def test_composeRunsEachServiceByItsName():
    own = set(COMPOSE["services"]) - TOOLS
    assert own == {s.name for s in registry.SERVICES}
    for service in registry.SERVICES:
        spec = COMPOSE["services"][service.name]
        assert spec["command"] == [service.plugin]
        listen = spec["environment"][f"WEBSTACK_{service.name.upper()}_LISTEN"]
        assert listen == "tcp:8080"


def test_composeFrontRoutesEachRouteToItsService():
    front = COMPOSE["services"]["front"]
    environment = front["environment"]
    upstreams = {
        key: value
        for key, value in environment.items()
        if key.startswith("WEBSTACK_FRONT_ROUTES_") and key.endswith("_UPSTREAM")
    }
    assert upstreams == {
        f"WEBSTACK_FRONT_ROUTES_{r.name.upper()}_UPSTREAM": f"{owner(r.name).name}:8080"
        for r in registry.ROUTES
    }
    assert set(front["depends_on"]) == {s.name for s in registry.BACKENDS}


# The README and the code's pointers.


def test_theReadmeShowsEveryRoute():
    readme = (ROOT / "README.md").read_text()
    for route in registry.ROUTES:
        assert f"{route.prefix}*" in readme, f"README's diagram lacks {route.prefix}"


def test_everyTestCaseNameNamesATestThatExists():
    stale = []
    for path in (ROOT / "services" / "src").rglob("*.py"):
        first = path.read_text().split("\n", 1)[0]
        found = re.search(r"test-case-name:\s*(\S+)", first)
        if not found:
            continue
        for name in found.group(1).split(","):
            module = name.strip()
            file = ROOT / "services" / "tests" / (module.removeprefix("tests.") + ".py")
            if not module.startswith("tests.") or not file.is_file():
                stale.append(f"{path.relative_to(ROOT)}: {module}")
    assert stale == []
