"""
The programs the bench drives that are not Python packages: wrk (required)
and nginx (one column of the table).  Running as root on Debian, the bench
installs a missing one with apt-get, so that one C{make bench} on a fresh
machine gives the whole table; otherwise it says what is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess

SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"])
"""
nginx lives in /usr/sbin, which a non-root PATH often leaves out.
"""

_updated: list[bool] = []


def findTool(name: str) -> str | None:
    return shutil.which(name, path=SEARCH_PATH)


def ensureTool(name: str, package: str) -> tuple[str | None, str]:
    """
    The path of program C{name}, installing Debian's C{package} first if
    it is missing and we may (root, apt-get present).

    @return: the path (or C{None}) and a sentence saying what happened.
    """
    found = findTool(name)
    if found:
        return found, f"{name}: {found}"
    apt = shutil.which("apt-get", path=SEARCH_PATH)
    if os.geteuid() != 0 or apt is None:
        return None, (
            f"{name} is not installed and the bench is not running as root with"
            f" apt-get: install {package} (apt-get install {package})"
        )
    print(f"    installing {package} with apt-get...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        if not _updated:
            subprocess.run([apt, "update", "-qq"], env=env, check=True, timeout=300,
                           stdout=subprocess.DEVNULL)
            _updated.append(True)
        subprocess.run([apt, "install", "-y", "-qq", package], env=env, check=True,
                       timeout=600, stdout=subprocess.DEVNULL)
    except (subprocess.SubprocessError, OSError) as e:
        return None, f"{name}: apt-get install {package} failed ({e})"
    found = findTool(name)
    if found is None:
        return None, f"{name}: still missing after apt-get install {package}"
    return found, f"{name}: installed {package} ({found})"
