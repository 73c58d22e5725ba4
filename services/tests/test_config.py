"""
Settings: defaults, the TOML file, environment overrides, and the one clear
line a bad value stops start-up with.
"""

import os
import subprocess
from pathlib import Path

import pytest

from webstack.async_ import settings as delayedSettings
from webstack.front.settings import loadSettings as loadFrontSettings
from webstack.localstack import TWISTD
from webstack.runtime.config import ConfigError, envName, readConfig
from webstack.runtime.plugin import loadServiceSettings
from webstack.runtime.settings import RuntimeSettings

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "config" / "stack.toml"


def load(document, environ=None, module=delayedSettings):
    return loadServiceSettings(module, document, environ or {}, "stack.toml")


def test_theShippedConfigIsValidForEveryService():
    document = readConfig(str(STACK))
    runtime, settings = load(document)
    assert runtime.listen == "tcp:8081:interface=127.0.0.1"
    assert runtime.backlog >= 1024
    assert settings.max_seconds == 60
    # The routing cookie's key is made by `make run`/`make up`, not shipped.
    key = {"WEBSTACK_FRONT_ROUTE_KEY": "a-test-key-of-32-bytes-0123456789"}
    front = loadFrontSettings(document, key, "stack.toml")
    assert {r.prefix for r in front.routes} >= {
        "/static/", "/async/", "/wsgi/", "/cgi/", "/auth/", "/session/"
    }
    assert [r.name for r in front.stickyRoutes()] == ["session"]
    assert front.pool_idle_timeout < RuntimeSettings().idle_timeout


def test_defaultsApplyWhenTheFileSaysNothing():
    runtime, settings = load({})
    assert runtime == RuntimeSettings()
    assert settings.default_seconds == 5.0


def test_aServiceTableOverridesRuntimeAndEnvironmentOverridesBoth():
    document = {"runtime": {"backlog": 2048}, "async": {"backlog": 4096}}
    runtime, _ = load(document)
    assert runtime.backlog == 4096
    runtime, _ = load(document, {"WEBSTACK_RUNTIME_BACKLOG": "100"})
    assert runtime.backlog == 100
    runtime, _ = load(document, {"WEBSTACK_ASYNC_BACKLOG": "300", "WEBSTACK_RUNTIME_BACKLOG": "100"})
    assert runtime.backlog == 300


def test_environmentNames():
    assert envName(("async", "max_seconds")) == "WEBSTACK_ASYNC_MAX_SECONDS"
    assert envName(("front", "routes", "async", "upstream")) == (
        "WEBSTACK_FRONT_ROUTES_ASYNC_UPSTREAM"
    )


@pytest.mark.parametrize(
    "document, environ, message",
    [
        ({"async": {"max_seconds": -1}}, {}, "stack.toml: async.max_seconds = -1 is invalid: out of range, allowed 0 to 3600"),
        ({}, {"WEBSTACK_ASYNC_MAX_SECONDS": "abc"}, "environment: WEBSTACK_ASYNC_MAX_SECONDS = 'abc' is invalid"),
        ({}, {"WEBSTACK_ASYNC_MAX_SECONDS": "nan"}, "expected a finite number"),
        ({"runtime": {"backlog": 1.5}}, {}, "runtime.backlog = 1.5 is invalid: expected a whole number"),
        ({"runtime": {"backlog": True}}, {}, "expected a number"),
        ({"async": {"max_secs": 3}}, {}, "unknown setting async.max_secs"),
        ({"async": {"default_seconds": 70}}, {}, "async.default_seconds = 70.0 is invalid: larger than async.max_seconds"),
        ({"async": []}, {}, "async must be a table"),
    ],
)
def test_badValuesAreNamed(document, environ, message):
    with pytest.raises(ConfigError) as raised:
        load(document, environ)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    "routes, message",
    [
        ({"a": {"prefix": "nope", "upstream": ""}}, "must start and end with /"),
        ({"a": {"prefix": "/-/", "upstream": ""}}, "belong to the front itself"),
        (
            {"a": {"prefix": "/x/"}, "b": {"prefix": "/x/"}},
            "front.routes.a has it already",
        ),
        ({"a": {"prefix": "/x/", "upstream": "host"}}, "'host' is not host:port"),
        ({"a": {"prefix": "/x/", "upstream": "h:99999"}}, "is not host:port"),
        ({"a": {"prefix": "/x/", "timeout": 0}}, "front.routes.a.timeout = 0"),
    ],
)
def test_badRoutesAreNamed(routes, message):
    with pytest.raises(ConfigError) as raised:
        loadFrontSettings({"front": {"routes": routes}}, {}, "stack.toml")
    assert message in str(raised.value)


def test_routeUpstreamsComeFromTheEnvironment():
    document = {"front": {"routes": {"async": {"prefix": "/async/", "upstream": ""}}}}
    environ = {"WEBSTACK_FRONT_ROUTES_ASYNC_UPSTREAM": "a:1, [::1]:2"}
    [route] = loadFrontSettings(document, environ, "stack.toml").routes
    assert route.targets() == [("a", 1), ("::1", 2)]


def run_twistd(env_overrides, config=STACK, timeout=30):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "services" / "src")
    env["WEBSTACK_CONFIG"] = str(config)
    env.update(env_overrides)
    return subprocess.run(
        [*TWISTD, "-n", "--pidfile=", "webstack-async"],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.integration
def test_aBadValueStopsStartUpWithOneClearLine():
    """
    A real twistd start with an out-of-range value: exit status 2 and one
    line on standard error naming the key, its value and what is allowed.
    """
    result = run_twistd({"WEBSTACK_ASYNC_MAX_SECONDS": "-5"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "webstack-async: environment: WEBSTACK_ASYNC_MAX_SECONDS = '-5' is invalid:"
        " out of range, allowed 0 to 3600"
    ]


@pytest.mark.integration
def test_aMissingConfigFileIsNamed(tmp_path):
    result = run_twistd({}, config=tmp_path / "nope.toml")
    assert result.returncode == 2
    assert "config file" in result.stderr and "nope.toml not found" in result.stderr


@pytest.mark.integration
def test_aBadListenDescriptionIsNamed():
    result = run_twistd({"WEBSTACK_ASYNC_LISTEN": "carrier-pigeon:8080"})
    assert result.returncode == 2
    assert "is not a valid endpoint description" in result.stderr
