"""
The container health check: exit 0 if the service answers 200 at its
readiness URL, 1 otherwise.  Python's own client, so the image needs no curl.

    python -m webstack.runtime.healthcheck [URL]

The URL defaults to C{$WEBSTACK_HEALTH_URL}, else the service's C{/readyz}
on 127.0.0.1:8080.
"""

import os
import sys
import urllib.request

DEFAULT = "http://127.0.0.1:8080/readyz"


def main(argv: list[str]) -> int:
    url = argv[1] if len(argv) > 1 else os.environ.get("WEBSTACK_HEALTH_URL", DEFAULT)
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 0 if response.status == 200 else 1
    except OSError as e:
        print(f"{url}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
