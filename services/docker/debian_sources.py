"""
Print apt sources (one-line format) for a Debian suite, from the mirrors this
host's apt is configured with: `mmdebstrap` builds webstack's offline base
image from them.  No mirror address is written in the repository; it is read
here, at build time.

    python3 debian_sources.py [SUITE]        (default: bookworm)

It asks apt itself (`apt-get indextargets`), which understands both the
one-line `.list` and the deb822 `.sources` formats and skips disabled
entries, and keeps only repositories whose origin is Debian (never a docker
or nodesource one).  A host on another release is mapped to SUITE:
`trixie-updates` becomes `bookworm-updates`.  Without apt lists (no `apt-get
update` yet) it reads the source files itself.
"""

from __future__ import annotations

import glob
import subprocess
import sys


def fromIndexTargets() -> list[tuple[str, str, str]]:
    try:
        out = subprocess.run(
            [
                "apt-get",
                "indextargets",
                "--format",
                "$(ORIGIN)\t$(REPO_URI)\t$(RELEASE)\t$(TARGET_OF)\t$(COMPONENT)",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    found = []
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 5 and parts[0] == "Debian" and parts[3] == "deb":
            found.append((parts[1].rstrip("/"), parts[2], parts[4]))
    return found


def fromSourceFiles() -> list[tuple[str, str, str]]:
    found = []
    for path in ["/etc/apt/sources.list", *glob.glob("/etc/apt/sources.list.d/*.list")]:
        try:
            lines = open(path).read().splitlines()
        except OSError:
            continue
        for line in lines:
            words = line.split("#", 1)[0].split()
            if not words or words[0] != "deb":
                continue
            words = [w for w in words[1:] if not w.startswith("[")]
            if len(words) >= 3 and "debian" in words[0]:
                found += [(words[0].rstrip("/"), words[1], c) for c in words[2:]]
    for path in glob.glob("/etc/apt/sources.list.d/*.sources"):
        for stanza in open(path).read().split("\n\n"):
            fields = {}
            for line in stanza.splitlines():
                if ":" in line and not line.startswith(("#", " ")):
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.split()
            if "deb" not in fields.get("types", []) or fields.get("enabled") == ["no"]:
                continue
            keyring = " ".join(fields.get("signed-by", []))
            if keyring and "debian-archive" not in keyring:
                continue
            for uri in fields.get("uris", []):
                for suite in fields.get("suites", []):
                    found += [(uri.rstrip("/"), suite, c) for c in fields.get("components", [])]
    return found


def main() -> int:
    suite = sys.argv[1] if len(sys.argv) > 1 else "bookworm"
    entries = fromIndexTargets() or fromSourceFiles()
    if not entries:
        sys.stderr.write("no Debian apt source is configured on this host\n")
        return 1
    hostCodename = min((s for _, s, _ in entries), key=len).split("-")[0]
    lines: dict[tuple[str, str], list[str]] = {}
    for uri, release, component in entries:
        if component != "main":
            continue
        mapped = release.replace(hostCodename, suite, 1)
        components = lines.setdefault((uri, mapped), [])
        if component not in components:
            components.append(component)
    for (uri, release), components in lines.items():
        print(f"deb {uri} {release} {' '.join(components)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
