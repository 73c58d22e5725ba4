"""
The files each service of the swarm stack reads, as swarm configs and
secrets: a compose file (JSON, which YAML reads) that `make swarm-up` deploys
together with swarm/stack.yml.

Why: in compose every container bind-mounts its own part of config/, but a
bind mount names a path on one host and does not follow a task to another
node.  Swarm carries configs and secrets to whichever node runs the task.
Neither holds a directory, so a directory is one config per file, each
mounted at the path the service reads it from; the names are the stack's
plus a digest of the content (configs cannot be changed, only replaced), so
a file changed on disk is a new config on the next `make swarm-up`, and only
the services that read it roll.

Who sees what is the same as in compose: every service stack.toml; static
its site and the .rpy scripts, cgi its scripts (execute bits kept), auth the
users' homes.  The user files and both keys are secrets, owned by the
image's user, mode 0400, under /run/secrets/ (swarm/stack.yml points the
settings there).

    python3 swarm/content.py STACK CONFIG_DIR OUT.json
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import sys
from pathlib import Path

SETTINGS = "stack.toml"
SERVICES = ("front", "async", "static", "wsgi", "cgi", "auth", "session")
TREES = {"static": ("static", "rpy"), "cgi": ("cgi-bin",), "auth": ("auth/home",)}
"""Directories of config/ a service reads, besides stack.toml."""
SECRETS = {
    "front": ("front/route.key",),
    "auth": ("auth/htpasswd", "auth/htdigest", "auth/digest.key"),
}
"""Files a service reads that must never be a config (anyone who can list
configs can read them): mounted at /run/secrets/<file name>."""
IMAGE_USER = "10001"
MAX_CONFIG_BYTES = 1000 * 1024  # swarmkit's MaxConfigSize
MAX_SECRET_BYTES = 500 * 1024  # swarmkit's MaxSecretSize
MAX_NAME = 64


class ContentError(Exception):
    """
    A file swarm cannot carry; the message says which and why.
    """


def objectName(stack: str, relative: str, data: bytes) -> str:
    """
    A config's or secret's name: the stack's, a readable hint of the path,
    and the content's digest (what makes it new when the file changes).
    """
    digest = hashlib.sha256(data).hexdigest()[:12]
    hint = re.sub(r"[^A-Za-z0-9]+", "-", relative).strip("-")
    room = MAX_NAME - len(stack) - len(digest) - 2
    if room < 1:
        raise ContentError(f"stack name {stack!r} is too long for config names (at most {MAX_NAME - 16} characters)")
    return f"{stack}_{hint[:room]}_{digest}"


def treeFiles(config: Path, tree: str) -> list[Path]:
    """
    The files under C{config/tree}: regular files only (a link would be
    carried as a copy of whatever it names, which the static service's
    own rule, never outside the root, could not check); dot files are
    skipped, as every service skips them.
    """
    top = config / tree
    if not top.is_dir():
        raise ContentError(f"{top} is not a directory")
    found = []
    for directory, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(directory) / name
            if path.is_symlink() or not path.is_file():
                raise ContentError(f"{path}: swarm configs carry regular files only, not links")
            found.append(path)
    return found


def render(stack: str, config: Path) -> dict:
    """
    The compose document: top-level configs and secrets, and each
    service's list of them.
    """
    document: dict = {"version": "3.9", "configs": {}, "secrets": {}, "services": {}}

    def read(relative: str, limit: int, kind: str) -> bytes:
        path = config / relative
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ContentError(f"{path} does not exist (make swarm-up makes the keys; make user the user files)") from None
        if len(data) > limit:
            raise ContentError(
                f"{path} is {len(data)} bytes; a swarm {kind} holds at most {limit}"
                " (a larger static file belongs in an image or a volume of its own)"
            )
        return data

    def add(kind: str, relative: str, limit: int) -> str:
        data = read(relative, limit, kind)
        name = objectName(stack, relative, data)
        key = name.removeprefix(stack + "_")
        document[kind + "s"][key] = {"name": name, "file": str((config / relative).resolve())}
        return key

    for service in SERVICES:
        configs = [{"source": add("config", SETTINGS, MAX_CONFIG_BYTES),
                    "target": f"/app/config/{SETTINGS}", "mode": 0o444}]
        for tree in TREES.get(service, ()):
            for path in treeFiles(config, tree):
                relative = path.relative_to(config).as_posix()
                executable = path.stat().st_mode & stat.S_IXUSR
                configs.append({
                    "source": add("config", relative, MAX_CONFIG_BYTES),
                    "target": f"/app/config/{relative}",
                    "mode": 0o555 if executable else 0o444,
                })
        secrets = [
            {"source": add("secret", relative, MAX_SECRET_BYTES),
             "target": Path(relative).name,
             "uid": IMAGE_USER, "gid": IMAGE_USER, "mode": 0o400}
            for relative in SECRETS.get(service, ())
        ]
        document["services"][service] = {"configs": configs}
        if secrets:
            document["services"][service]["secrets"] = secrets
    return document


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: content.py STACK CONFIG_DIR OUT.json", file=sys.stderr)
        return 2
    stack, config, out = argv
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", stack):
        print(f"content.py: {stack!r} is not a stack name (letters, digits, - and _)", file=sys.stderr)
        return 2
    try:
        document = render(stack, Path(config))
    except ContentError as e:
        print(f"content.py: {e}", file=sys.stderr)
        return 1
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
