# -*- test-case-name: tests.test_cgi -*-
"""
The CGI service's settings: the C{[cgi]} table of C{stack.toml}.
"""

from __future__ import annotations

from dataclasses import dataclass

from webstack.runtime.config import commaList, parsedList, setting

SECTION = "cgi"


def interpreterItem(item: str) -> tuple[str, str]:
    """
    One item of C{cgi.interpreters}, C{.ext=/absolute/interpreter}, as
    C{(extension, interpreter)}.

    @raise ValueError: if it is not of that form.
    """
    extension, sep, program = item.partition("=")
    if not sep or not extension.startswith(".") or not program.startswith("/"):
        raise ValueError(item)
    return extension, program


@dataclass(frozen=True)
class Settings:
    root: str = setting("cgi-bin", help="the scripts, relative to stack.toml's directory")
    timeout: float = setting(10.0, minimum=0.1, maximum=3600, help="stop a script after (s)")
    kill_grace: float = setting(2.0, minimum=0, maximum=60, help="SIGTERM to SIGKILL (s)")
    interpreters: str = setting(
        ".sh=/bin/sh", help="extension=interpreter, comma-separated (FilteredScript)"
    )
    pass_env: str = setting("PATH,LANG,TZ", help="server variables a script may see")
    max_processes: int = setting(
        32, minimum=1, maximum=4096, help="scripts running at once; more get 503 at once"
    )
    retry_after: int = setting(
        1, minimum=0, maximum=3600, help="s, the Retry-After of a 503 when all are running"
    )

    def interpreterMap(self) -> dict[str, str]:
        """
        C{interpreters}, parsed: the interpreter of each extension.

        @raise ConfigError: naming the setting and its first bad item.
        """
        return dict(
            parsedList(
                self.interpreters,
                f"{SECTION}.interpreters",
                interpreterItem,
                ".ext=/absolute/interpreter",
            )
        )

    def passEnv(self) -> tuple[str, ...]:
        """
        C{pass_env}, parsed: the names of the variables a script may see.
        """
        return commaList(self.pass_env)

    def __post_init__(self) -> None:
        self.interpreterMap()
