"""
The lock files are made by a tool, never by hand: C{make lock} resolves the
declared requirements (C{services/pyproject.toml}, C{loadtest/requirements.in})
with C{uv pip compile --generate-hashes}, and every install (the virtual
environments, the wheels for the images, the images) checks those hashes.

Resolving again needs the network, so this checks what can be checked
without it: each lock is exact pins with hashes and nothing else; its header
holds the sha256 of the requirements it was made from, and they are still the
declared ones; every declared requirement is pinned at a version it allows;
every third-party import is declared; the dev lock holds the services' very
pins; the lock tool and the test runner stay out of what the images install.
Each failure says what is out of date and to run C{make lock}.
"""

from __future__ import annotations

import ast
import hashlib
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
MAKE_LOCK = "run `make lock`"

# The environment the locks are made for (the Makefile's LOCK_PYTHON and
# LOCK_PLATFORM): a declared requirement whose marker is false there is not
# expected in the lock.
TARGET = {
    "python_version": "3.11",
    "python_full_version": "3.11.2",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "extra": "",
}

# Import names that are not their distribution's name.
DISTRIBUTIONS = {"zope": "zope-interface", "yaml": "pyyaml"}


@dataclass(frozen=True)
class Lock:
    """
    One lock file and what it is made from: a C{pyproject.toml}'s
    C{[project] dependencies} (and one of its C{[dependency-groups]}), or a
    requirements file.
    """

    path: str
    source: str
    group: str = ""

    def declared(self) -> list[str]:
        """
        The requirements this lock is made from, in the order they are
        declared, as the Makefile's LOCK_STAMP reads them.
        """
        text = (ROOT / self.source).read_text()
        if self.source.endswith(".toml"):
            project = tomllib.loads(text)
            wanted = project["project"]["dependencies"]
            if self.group:
                wanted = wanted + project["dependency-groups"][self.group]
        else:
            wanted = [line.split("#")[0] for line in text.splitlines()]
        return [line.strip() for line in wanted if line.strip()]

    def inputDigest(self) -> str:
        return hashlib.sha256("\n".join(self.declared()).encode()).hexdigest()

    def recordedDigest(self) -> str | None:
        found = re.search(r"^# input-sha256: ([0-9a-f]{64})$", self.text(), re.M)
        return found and found.group(1)

    def text(self) -> str:
        return (ROOT / self.path).read_text()


SERVICES = Lock("services/requirements.lock", "services/pyproject.toml")
DEV = Lock("services/requirements-dev.lock", "services/pyproject.toml", "dev")
LOAD = Lock("loadtest/requirements.lock", "loadtest/requirements.in")
LOCKS = [SERVICES, DEV, LOAD]

PIN = re.compile(
    r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;]+)"
    r"(?P<hashes>(?:\s+--hash=sha256:[0-9a-f]{64})+)"
)


def pins(text: str, where: str = "lock") -> dict[str, tuple[str, frozenset[str]]]:
    """
    Parse a lock: canonical name to (version, sha256 hashes).

    @raise AssertionError: for any line that is not an exact pin with
        hashes (an unpinned or unhashed requirement, an option, a URL), or a
        package pinned twice.
    """
    found: dict[str, tuple[str, frozenset[str]]] = {}
    for line in text.replace("\\\n", " ").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = PIN.fullmatch(line)
        assert match, f"{where}: {line[:80]!r} is not an exact pin with sha256 hashes: {MAKE_LOCK}"
        name = canonicalize_name(match["name"])
        assert name not in found, f"{where}: {name} is pinned twice: {MAKE_LOCK}"
        found[name] = (match["version"], frozenset(re.findall(r"sha256:(\w+)", match["hashes"])))
    return found


def thirdPartyImports(files: list[Path], local: set[str]) -> dict[str, Path]:
    """
    The distributions the given files import (by canonical name), each with
    one file that imports it; the standard library and C{local} left out.
    """
    found: dict[str, Path] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in local:
                    continue
                found.setdefault(canonicalize_name(DISTRIBUTIONS.get(top, top)), path)
    return found


def declaredNames(lock: Lock) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in lock.declared()}


@pytest.mark.parametrize("lock", LOCKS, ids=lambda lock: lock.path)
def test_everyLineIsAnExactPinWithHashes(lock):
    locked = pins(lock.text(), lock.path)
    assert len(locked) > 3


def test_pinsRefuseWhatPipWouldNotHashCheck():
    """
    L{pins} is the check that makes every other test here mean something:
    it refuses an unhashed pin, a range, an option and a package twice.
    """
    good = "attrs==26.1.0 \\\n    --hash=sha256:" + "a" * 64 + "\n    # via twisted\n"
    assert pins(good) == {"attrs": ("26.1.0", frozenset(["a" * 64]))}
    for bad in [
        "attrs==26.1.0\n",
        "attrs>=26 --hash=sha256:" + "a" * 64 + "\n",
        "attrs==26.1.0 --hash=md5:" + "a" * 32 + "\n",
        "-e ./services\n",
        "--index-url https://example.invalid/simple\n" + good,
        good + good.replace("attrs", "Attrs"),
    ]:
        with pytest.raises(AssertionError, match="make lock"):
            pins(bad)


@pytest.mark.parametrize("lock", LOCKS, ids=lambda lock: lock.path)
def test_lockIsMadeFromTheDeclaredRequirements(lock):
    recorded = lock.recordedDigest()
    assert recorded, f"{lock.path} has no '# input-sha256:' header, so no tool made it: {MAKE_LOCK}"
    assert recorded == lock.inputDigest(), (
        f"{lock.path} is out of date: {lock.source}"
        f"{' (with its ' + lock.group + ' group)' if lock.group else ''} has changed since "
        f"the lock was made from it: {MAKE_LOCK}"
    )


@pytest.mark.parametrize("lock", LOCKS, ids=lambda lock: lock.path)
def test_everyDeclaredRequirementIsPinnedAtAVersionItAllows(lock):
    locked = pins(lock.text(), lock.path)
    for line in lock.declared():
        requirement = Requirement(line)
        if requirement.marker and not requirement.marker.evaluate(TARGET):
            continue
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{lock.source} asks for {line!r}, {lock.path} lacks it: {MAKE_LOCK}"
        version = locked[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{lock.source} asks for {line!r}, {lock.path} pins {name}=={version}: {MAKE_LOCK}"
        )


def test_servicesImportOnlyWhatTheyDeclare():
    """
    The services' code imports only its declared dependencies (their own
    dependencies may change under them), and the tests only those and the
    dev group.  C{webstack.bench.chart} runs in the load environment.
    """
    src = ROOT / "services" / "src"
    chart = src / "webstack" / "bench" / "chart.py"
    code = [p for p in src.rglob("*.py") if p != chart]
    tests = [*(ROOT / "services" / "tests").rglob("*.py"), *(ROOT / "loadtest" / "tests").rglob("*.py")]
    local = {"webstack", "webstack_load", "conftest"}
    for files, lock in [(code, SERVICES), (tests, DEV)]:
        missing = {
            name: str(path.relative_to(ROOT))
            for name, path in thirdPartyImports(files, local).items()
            if name not in declaredNames(lock)
        }
        assert not missing, f"imported but not declared in {lock.source}: {missing} (then {MAKE_LOCK})"


def test_loadGeneratorImportsOnlyWhatItDeclares():
    loadtest = ROOT / "loadtest"
    files = [p for p in loadtest.rglob("*.py") if "tests" not in p.relative_to(loadtest).parts]
    files.append(ROOT / "services" / "src" / "webstack" / "bench" / "chart.py")
    local = {"webstack", "webstack_load", "locustfile"}
    missing = {
        name: str(path.relative_to(ROOT))
        for name, path in thirdPartyImports(files, local).items()
        if name not in declaredNames(LOAD)
    }
    assert not missing, f"imported but not declared in {LOAD.source}: {missing} (then {MAKE_LOCK})"


def test_devLockHoldsTheServicesPins():
    """
    The tests run on the very versions (and files) the images install.
    """
    services = pins(SERVICES.text(), SERVICES.path)
    dev = pins(DEV.text(), DEV.path)
    differ = {name: (pin[0], dev.get(name, ("missing",))[0]) for name, pin in services.items()
              if dev.get(name) != pin}
    assert not differ, f"{DEV.path} differs from {SERVICES.path} (services, dev): {differ}: {MAKE_LOCK}"


def test_lockToolAndTestRunnerStayOutOfTheImages():
    """
    uv (the lock tool) is pinned with hashes like everything else, in the
    dev lock that C{make venv} installs and C{make lock} runs from; neither
    it nor pytest is in the services' lock, which is what their image
    installs.  (The load generator's lock has pytest because locust itself
    requires it.)
    """
    assert "uv" in pins(DEV.text(), DEV.path)
    assert "$(VENV)/bin/uv pip compile" in (ROOT / "Makefile").read_text()
    services = pins(SERVICES.text(), SERVICES.path)
    assert not {"uv", "pytest", "pyyaml"} & services.keys()
    assert "uv" not in pins(LOAD.text(), LOAD.path)


def pipCommands(path: Path) -> list[str]:
    """
    Every C{pip install} and C{pip download} command of a Makefile or a
    Dockerfile, its continuation lines joined.
    """
    text = path.read_text().replace("\\\n", " ")
    return [line for line in text.splitlines() if re.search(r"\bpip (install|download)\b", line)]


@pytest.mark.parametrize(
    "name, count",
    [("Makefile", 4), ("services/Dockerfile", 1), ("loadtest/Dockerfile", 1)],
)
def test_everyInstallFromALockChecksItsHashes(name, count):
    """
    pip checks hashes by itself once any requirement has one; asking for it
    also refuses a lock that lost them.  Counted, so that a command moved
    elsewhere is noticed.
    """
    commands = [c for c in pipCommands(ROOT / name) if ".lock" in c]
    assert len(commands) == count, commands
    for command in commands:
        assert "--require-hashes" in command, f"{name}: {command.strip()}"
