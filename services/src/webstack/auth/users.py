"""
Add a user or change a password, in both files at once:

    python -m webstack.auth.users set NAME [--config config/stack.toml]

The password is read from $PASSWORD if set, else asked for twice (it is
never an argument, so it stays out of the shell's history and `ps`).  The
user's public_html is made if missing.  A running auth service sees the
change on its next request.

Both files are written whole to a new file of mode 0600 in the same
directory, flushed to disk, then renamed over the old one: a reader sees the
old file or the new one, never half of one, and the hashes are never
readable by other users, not even for a moment (the file a checkout holds
with mode 0644 becomes 0600 at the first change).
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
import tempfile

from twisted.python.filepath import FilePath

from webstack.runtime.config import ConfigError, configPath, readConfig
from webstack.runtime.settings import ownSettings

from .passwords import bcryptHash, htdigestHash
from .settings import SECTION, Settings

_NAME = re.compile(r"\A[a-z][a-z0-9_-]{0,31}\Z")


def _replaceLine(path: FilePath, name: str, line: str) -> None:
    lines = path.getContent().decode("utf-8").splitlines() if path.exists() else []
    kept = [entry for entry in lines if entry.split(":", 1)[0] != name]
    kept.append(line)
    path.parent().makedirs(ignoreExistingDirectory=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent().path, prefix=f".{path.basename()}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o600)  # mkstemp's mode, said rather than assumed
            f.write("\n".join(kept) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path.path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="webstack.auth.users", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["set"])
    parser.add_argument("name")
    parser.add_argument("--config", default=None)
    args = parser.parse_args(argv)
    if not _NAME.match(args.name):
        print("a user name is 1 to 32 of a-z, 0-9, _ and -, starting with a letter", file=sys.stderr)
        return 2
    path = args.config or configPath()
    try:
        document = readConfig(path)
        settings = ownSettings(Settings, document, SECTION, os.environ, path)
    except ConfigError as e:
        print(f"webstack.auth.users: {e}", file=sys.stderr)
        return 2
    password = os.environ.get("PASSWORD")
    if password is None:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            print("the two passwords differ; nothing changed", file=sys.stderr)
            return 1
    if len(password) < 8:
        print("a password has at least 8 characters; nothing changed", file=sys.stderr)
        return 1
    base = FilePath(os.path.abspath(path)).parent()
    _replaceLine(base.preauthChild(settings.htpasswd), args.name, f"{args.name}:{bcryptHash(password)}")
    _replaceLine(
        base.preauthChild(settings.htdigest),
        args.name,
        f"{args.name}:{settings.realm}:{htdigestHash(args.name, settings.realm, password)}",
    )
    public = base.preauthChild(settings.homes).child(args.name).child("public_html")
    if not public.exists():
        public.makedirs()
        public.child("index.html").setContent(
            f"<!doctype html><title>{args.name}</title><h1>{args.name}'s public_html</h1>\n".encode()
        )
    print(f"{args.name}: password set for Basic (bcrypt) and Digest (realm {settings.realm})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
