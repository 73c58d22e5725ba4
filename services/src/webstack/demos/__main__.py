"""
C{python -m webstack.demos [NAME] [--short]}: list the demos, or run one.
"""

from __future__ import annotations

import argparse
import sys

from . import DEMOS
from .compose import ComposeStack, StackError
from .narration import Narrator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo-NAME", description=__doc__)
    parser.add_argument("name", nargs="?", help="the demo to run; none: list them")
    parser.add_argument("--short", action="store_true", help="the quick form make test runs")
    args = parser.parse_args(argv)
    if not args.name:
        print("demos (make demo-NAME), against the stack of `make up`:")
        for name, module in DEMOS.items():
            print(f"  make demo-{name:<13} {module.TITLE}")
        return 0
    module = DEMOS.get(args.name)
    if module is None:
        print(f"no demo called {args.name!r}; `make demo` lists them", file=sys.stderr)
        return 2
    say = Narrator(f"demo-{args.name}")
    stack = ComposeStack()
    say.step(f"demo-{args.name}: {module.TITLE} (project {stack.project}, front {stack.publish})")
    try:
        return 0 if module.run(stack, say, args.short) else 1
    except (StackError, TimeoutError, RuntimeError) as e:
        say.verdict(False, f"could not finish: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
