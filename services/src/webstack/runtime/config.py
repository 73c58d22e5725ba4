# -*- test-case-name: tests.test_config -*-
"""
Settings: C{config/stack.toml}, each key overridable by an environment variable.

Every setting is declared once, as a field of a frozen dataclass made with
L{setting}: its type, default, bounds and a line of help.  L{buildSettings}
fills such a class from layers of TOML tables and then from the environment,
checks every value, and raises L{ConfigError} with one line that names the key,
the bad value, where it came from and what is allowed.

The environment variable for a key is C{WEBSTACK_} followed by its dotted path
in upper case with C{_} for the dots: C{async.max_seconds} is
C{WEBSTACK_ASYNC_MAX_SECONDS}, C{front.routes.async.upstream} is
C{WEBSTACK_FRONT_ROUTES_ASYNC_UPSTREAM}.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, get_type_hints

ENV_PREFIX = "WEBSTACK_"
CONFIG_ENV = "WEBSTACK_CONFIG"
DEFAULT_CONFIG_PATH = "config/stack.toml"

T = TypeVar("T")


class ConfigError(Exception):
    """
    A setting is missing, malformed or out of range.  C{str()} is one line
    meant for an operator.
    """


def setting(
    default: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: Iterable[str] | None = None,
    help: str = "",
) -> Any:
    """
    Declare one setting of a settings dataclass.

    @param minimum: smallest allowed value (inclusive), for numbers.
    @param maximum: largest allowed value (inclusive), for numbers.
    @param choices: the allowed values, for strings.
    @param help: what the setting does, shown in error messages' context.
    """
    return dataclasses.field(
        default=default,
        metadata={
            "minimum": minimum,
            "maximum": maximum,
            "choices": tuple(choices) if choices is not None else None,
            "help": help,
        },
    )


def envName(path: Iterable[str]) -> str:
    """
    The environment variable that overrides the key at C{path}.
    """
    return ENV_PREFIX + "_".join(part.upper().replace("-", "_") for part in path)


def configPath(environ: Mapping[str, str] | None = None) -> str:
    """
    Where the stack's TOML file is: C{$WEBSTACK_CONFIG}, else
    C{config/stack.toml} relative to the working directory.
    """
    environ = os.environ if environ is None else environ
    return environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH


def readConfig(path: str) -> dict[str, Any]:
    """
    Parse the TOML file at C{path}.

    @raise ConfigError: if it cannot be read or parsed.
    """
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} not found (set {CONFIG_ENV} to its path)"
        ) from None
    except OSError as e:
        raise ConfigError(f"config file {path} cannot be read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None


def table(document: Mapping[str, Any], *path: str) -> Mapping[str, Any]:
    """
    The table at C{path} in C{document}, or an empty one if it is absent.

    @raise ConfigError: if something other than a table is there.
    """
    here: Any = document
    for depth, part in enumerate(path):
        here = here.get(part, {})
        if not isinstance(here, Mapping):
            dotted = ".".join(path[: depth + 1])
            raise ConfigError(f"{dotted} must be a table, not {here!r}")
    return here


@dataclasses.dataclass(frozen=True)
class Layer:
    """
    One source of values for a settings class: the table at C{path}.

    @ivar path: dotted path of the table, e.g. C{("async",)}.
    @ivar values: the table itself.
    @ivar source: where the table was read from, for error messages.
    """

    path: tuple[str, ...]
    values: Mapping[str, Any]
    source: str = "config"


def _parseEnv(raw: str, kind: type) -> Any:
    text = raw.strip()
    if kind is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected true or false")
    if kind is int:
        return int(text)
    if kind is float:
        return float(text)
    return raw


def _check(name: str, value: Any, kind: type, meta: Mapping[str, Any]) -> Any:
    """
    Return C{value} converted to C{kind}, or raise C{ValueError} saying why
    it is not allowed.
    """
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError("expected true or false")
        return value
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number ({kind.__name__})")
        if kind is int and not float(value).is_integer():
            raise ValueError("expected a whole number")
        value = kind(value)
        if not math.isfinite(value):
            raise ValueError("expected a finite number")
        lo, hi = meta["minimum"], meta["maximum"]
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(f"out of range, allowed {_range(lo, hi)}")
        return value
    if kind is str:
        if not isinstance(value, str):
            raise ValueError("expected a string")
        choices = meta["choices"]
        if choices is not None and value not in choices:
            raise ValueError(f"allowed values are {', '.join(choices)}")
        return value
    raise TypeError(f"unsupported setting type {kind!r} for {name}")


def commaList(text: str) -> tuple[str, ...]:
    """
    The items of a comma-separated setting (C{"PATH, LANG,TZ"}): each one
    stripped, empty ones dropped, so C{""} is no item and a trailing comma
    is harmless.
    """
    return tuple(item for item in (part.strip() for part in text.split(",")) if item)


def parsedList(
    text: str, key: str, parse: Callable[[str], T], expected: str
) -> tuple[T, ...]:
    """
    The items of a comma-separated setting, each one made into a value by
    C{parse} (see L{commaList}).

    @param key: the setting C{text} came from (C{"auth.trusted_proxies"}),
        for the error.
    @param parse: makes one item's value; raises C{ValueError} if it cannot.
    @param expected: what an item should be, for the error (C{"host:port"}).

    @raise ConfigError: naming C{key}, its value and the first item that is
        not C{expected}.
    """
    values = []
    for item in commaList(text):
        try:
            values.append(parse(item))
        except ValueError:
            raise ConfigError(
                f"{key} = {text!r} is invalid: {item!r} is not {expected}"
            ) from None
    return tuple(values)


def _range(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"{lo:g} to {hi:g}"
    if lo is not None:
        return f"at least {lo:g}"
    return f"at most {hi:g}"


def buildSettings(
    cls: type[T],
    layers: Iterable[Layer],
    environ: Mapping[str, str] | None = None,
    *,
    foreignKeys: Iterable[str] = (),
) -> T:
    """
    Fill the settings dataclass C{cls}.

    Values come from the code's defaults, then each layer's TOML table in
    order, then each layer's environment variables in order, so that an
    environment variable always wins over the file.

    @param foreignKeys: keys that may appear in the layers' tables without
        belonging to C{cls} (another settings class's, or sub-tables).  Any
        other unknown key is a mistake and raises L{ConfigError}.

    @raise ConfigError: naming the first bad key.
    """
    environ = os.environ if environ is None else environ
    layers = list(layers)
    hints = get_type_hints(cls)
    # Only fields declared with setting() are read; others keep their default.
    fields = {
        f.name: f
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if "minimum" in f.metadata
    }
    allowed = set(fields) | set(foreignKeys)

    for layer in layers:
        for key in layer.values:
            if key not in allowed:
                dotted = ".".join(layer.path + (key,))
                raise ConfigError(
                    f"{layer.source}: unknown setting {dotted}"
                    f" (known here: {', '.join(sorted(fields))})"
                )

    values: dict[str, Any] = {}
    for name, f in fields.items():
        kind = hints[name]
        value, origin = f.default, "default"
        for layer in layers:
            if name in layer.values:
                value = shown = layer.values[name]
                origin = f"{layer.source}: {'.'.join(layer.path + (name,))}"
        for layer in layers:
            variable = envName(layer.path + (name,))
            if variable in environ:
                origin = f"environment: {variable}"
                shown = environ[variable]
                try:
                    value = _parseEnv(shown, kind)
                except ValueError as e:
                    raise ConfigError(f"{origin} = {shown!r} is invalid: {e}") from None
        try:
            values[name] = _check(name, value, kind, f.metadata)
        except ValueError as e:
            raise ConfigError(f"{origin} = {shown!r} is invalid: {e}") from None
    return cls(**values)
