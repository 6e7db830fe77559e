"""Validation shared by config.yaml, subscriber files and the mailer: safe YAML reading, error wording, emails.

Reads YAML files (never writes them). Every rule lives once here so config.yaml and
subscribers/*.yaml are held to the same bounds and report problems in the same words:
`file[:line]: key: problem (fix)`, one line each, with any quoted value capped in length.
"""

from __future__ import annotations

import difflib
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import time
from functools import cache
from pathlib import Path
from typing import Any, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import yaml
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from pydantic import BaseModel, ValidationError

from .text import one_line, quoted, shorten

# --- safe YAML ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class YamlLimits:
    """What one YAML file may hold; anything beyond is refused before a value is built.

    `max_nodes` counts scalars, lists and mappings as the aliases expand, so a few
    hundred bytes of anchors ("billion laughs") cannot turn into gigabytes.
    """

    max_bytes: int
    max_aliases: int
    max_depth: int
    max_nodes: int


# A subscriber file is a handful of short lists: 256 KiB is generous, and aliases buy
# nothing there but risk, so none are allowed.
SUBSCRIBER_LIMITS = YamlLimits(max_bytes=256 * 1024, max_aliases=0, max_depth=10, max_nodes=20_000)
# config.yaml is written by the operator, who may reuse a value with an anchor or two.
CONFIG_LIMITS = YamlLimits(max_bytes=1024 * 1024, max_aliases=16, max_depth=20, max_nodes=10_000)

# Where a problem names the file, it names at most this many errors; the rest are counted.
MAX_REPORTED_ERRORS = 5


# libyaml's parser when PyYAML was built with it (about ten times faster); the pure-Python one otherwise.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _CoreSchema(_SafeLoader):  # type: ignore[valid-type,misc]
    """PyYAML's safe loader with the YAML 1.2 core schema's implicit types.

    YAML 1.1 turns `on`, `off`, `yes`, `no` into booleans, `7:30` into 450 and
    `2026-03-20` into a date; in the 1.2 core schema only `true`/`false` are
    booleans and those stay the strings the person wrote.
    """


class _CoreSchemaDumper(yaml.SafeDumper):
    """Dumper that quotes exactly the strings `_CoreSchema` would read as something else."""


_CORE_TYPES: tuple[tuple[str, str, str], ...] = (
    ("tag:yaml.org,2002:null", r"~|null|Null|NULL|", "~nN"),
    ("tag:yaml.org,2002:bool", r"true|True|TRUE|false|False|FALSE", "tTfF"),
    ("tag:yaml.org,2002:int", r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", "-+0123456789"),
    ("tag:yaml.org,2002:float",
     r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
     "-+.0123456789"),
)


def _use_core_schema(cls: type[yaml.SafeLoader] | type[yaml.SafeDumper]) -> None:
    cls.yaml_implicit_resolvers = {}
    for tag, pattern, first in _CORE_TYPES:
        cls.add_implicit_resolver(tag, re.compile(f"^(?:{pattern})$"), list(first))


def _construct_core_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    # PyYAML's int constructor reads 0755 as octal (YAML 1.1); in the core schema it is 755.
    text = str(loader.construct_scalar(node))
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text, 10)


_use_core_schema(_CoreSchema)
_use_core_schema(_CoreSchemaDumper)
_CoreSchema.add_constructor("tag:yaml.org,2002:int", _construct_core_int)


class YamlRefused(Exception):
    """A YAML file broke a bound or a rule; the message is one line naming the file (and line)."""


def read_yaml_mapping(path: Path, error: type[Exception], limits: YamlLimits) -> dict[str, Any]:
    """Parse a YAML file that must hold one mapping, within `limits`; raise `error` with a one-line message."""
    return parse_yaml_mapping(read_yaml_text(path, error, limits), path, error, limits)


def read_yaml_text(path: Path, error: type[Exception], limits: YamlLimits) -> str:
    """The text of a YAML file (a regular file, UTF-8, within `limits.max_bytes`), not yet parsed.

    For a caller that must parse and fingerprint the very same bytes (compare-and-swap writes).
    """
    try:
        return _read_text(path, limits.max_bytes)
    except YamlRefused as exc:
        raise error(str(exc)) from None


def parse_yaml_mapping(text: str, path: Path, error: type[Exception], limits: YamlLimits) -> dict[str, Any]:
    """Parse YAML text that must hold one mapping, within `limits`; `path` names the text in messages."""
    try:
        if len(text.encode("utf-8")) > limits.max_bytes:
            raise YamlRefused(_too_large(path, limits.max_bytes))
        _check_events(path, text, limits)
        data = _construct(path, text, limits)
    except YamlRefused as exc:
        raise error(str(exc)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(f"{path}: must be a mapping of keys to values, got a {type(data).__name__}")
    return data


def dump_yaml(data: dict[str, Any]) -> str:
    """YAML text that `read_yaml_mapping` reads back to `data` (same schema, block style, keys in order)."""
    return yaml.dump(data, Dumper=_CoreSchemaDumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False, width=100)


def _read_text(path: Path, max_bytes: int) -> str:
    # Only regular files: a FIFO named alice.yaml would block the run, a folder cannot be read.
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise YamlRefused(f"{path}: not a regular file; remove it or replace it with a YAML file")
        with path.open("rb") as handle:
            raw = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise YamlRefused(f"{path}: file not found") from None
    except OSError as exc:
        raise YamlRefused(f"{path}: cannot be read ({shorten(exc.strerror or str(exc), 100)})") from None
    if len(raw) > max_bytes:
        raise YamlRefused(_too_large(path, max_bytes))
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise YamlRefused(f"{path}: not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8") from None


def _too_large(path: Path, max_bytes: int) -> str:
    return f"{path}: larger than {max_bytes // 1024} KiB, the limit for this file; shorten it"


def _check_events(path: Path, text: str, limits: YamlLimits) -> None:
    """Walk the parser's events (no values are built) and refuse aliases, depth and size over the limits."""
    depth = aliases = nodes = 0
    for event in _events(path, text, limits):
        line = event.start_mark.line + 1 if event.start_mark else None
        where = f"{path}:{line}" if line else str(path)
        if isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > limits.max_aliases:
                raise YamlRefused(f"{where}: {_alias_rule(limits)}; write the value out "
                                  f"instead of *{shorten(str(event.anchor), 40)}")
        elif isinstance(event, (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            nodes += 1
            if nodes > limits.max_nodes:
                raise YamlRefused(f"{where}: holds more than {limits.max_nodes} values, the limit for this file")
            if not isinstance(event, yaml.ScalarEvent):
                depth += 1
                if depth > limits.max_depth:
                    raise YamlRefused(_too_deep(where, limits))
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1


def _alias_rule(limits: YamlLimits) -> str:
    if limits.max_aliases == 0:
        return "YAML aliases (*name) are not allowed in this file"
    return f"more than {limits.max_aliases} YAML aliases (*name), the limit for this file"


def _events(path: Path, text: str, limits: YamlLimits) -> Iterator[yaml.Event]:
    try:
        yield from yaml.parse(text, Loader=_CoreSchema)
    except yaml.YAMLError as exc:
        # libyaml looks ahead through a run of `[[[[` and stops at its own depth limit (1000)
        # before handing us the events; say it in the same words as our own, lower, limit.
        if "maximum nesting depth" in str(getattr(exc, "problem", "")):
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            raise YamlRefused(_too_deep(where, limits)) from None
        raise YamlRefused(_describe_yaml_error(path, exc)) from None


def _too_deep(where: str, limits: YamlLimits) -> str:
    return f"{where}: nested more than {limits.max_depth} levels deep, the limit for this file; flatten it"


def _construct(path: Path, text: str, limits: YamlLimits) -> Any:
    loader = _CoreSchema(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_expanded(path, node, limits)
        return loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise YamlRefused(_describe_yaml_error(path, exc)) from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise YamlRefused(f"{path}: {shorten(str(exc), 120)}") from None
    finally:
        loader.dispose()


def _check_expanded(path: Path, root: yaml.Node, limits: YamlLimits) -> None:
    """Count nodes as aliases expand them, stopping at the budget, so the count costs at most `max_nodes` steps.

    The event check bounds what is written; this bounds what the aliases that are
    allowed would multiply it into (and stops at a self-referencing anchor).
    """
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    seen = 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > limits.max_nodes or depth > limits.max_depth:
            line = node.start_mark.line + 1 if node.start_mark else 0
            raise YamlRefused(f"{path}:{line}: its aliases expand to more than {limits.max_nodes} values or "
                              f"{limits.max_depth} levels, the limit for this file; write the values out")
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.extend(((key, depth + 1), (value, depth + 1)))


def _describe_yaml_error(path: Path, exc: yaml.YAMLError) -> str:
    # Keep YAML's line; drop its multi-line context, which quotes the file back at the reader.
    mark = getattr(exc, "problem_mark", None)
    where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
    problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc)
    return f"{where}: not valid YAML ({shorten(str(problem), 120)})"


# --- wording of validation errors ----------------------------------------------------------


def describe_validation_error(path: Path, exc: ValidationError, model: type[BaseModel]) -> str:
    """Pydantic's errors as lines of `file: key: problem (fix)`, at most MAX_REPORTED_ERRORS of them."""
    errors = exc.errors()
    lines = [f"{path}: {_key_of(err['loc'])}: {_explain(err, model)}" for err in errors[:MAX_REPORTED_ERRORS]]
    if len(errors) > MAX_REPORTED_ERRORS:
        lines.append(f"{path}: and {len(errors) - MAX_REPORTED_ERRORS} more problems")
    return "\n".join(lines)


def explain_error(err: Any, model: type[BaseModel]) -> str:
    """One pydantic error as the problem and its fix, worded as for a file (without the file and key)."""
    return _explain(err, model)


def _key_of(loc: tuple[Any, ...]) -> str:
    # A hostile key (a huge or multi-line string) must not flood the message either.
    return ".".join(shorten(str(part), 40) for part in loc) or "(top level)"


def _explain(err: Any, model: type[BaseModel]) -> str:
    kind = err["type"]
    got = quoted(err.get("input")) if kind != "missing" else ""
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, err["loc"][:-1])
        close = difflib.get_close_matches(str(err["loc"][-1]), allowed, n=1)
        guess = f" (did you mean {close[0]!r}?)" if close else ""
        hint = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
        return f"unknown key{guess}{hint}. Remove it or fix its spelling"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"must be one of {expected}, got {got}"
    if kind == "missing":
        return "is required; add it"
    if kind == "value_error":
        problem = one_line(err["msg"].removeprefix("Value error, "))
        # A rule about the whole file (loc is empty) would otherwise quote the whole file back;
        # a problem that already quotes the value need not repeat it.
        return problem if not err["loc"] or problem.startswith(got) else f"{problem}, got {got}"
    return f"{one_line(err['msg']).lower()}, got {got}{_type_hint(kind, err.get('input'))}"


def _type_hint(kind: str, value: object) -> str:
    """The fix for the type mistakes YAML makes easy: quoting a number, writing yes/no for a boolean."""
    if kind in ("int_type", "float_type") and isinstance(value, str):
        return " (write the number without quotes)"
    if kind == "bool_type":
        return " (write true or false)"
    if kind in ("int_type", "float_type") and isinstance(value, bool):
        return " (write a number)"
    return ""


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int):  # an item of a list field: the keys of the item's model
            if not hasattr(current, "model_fields"):  # (the list's item model may be unwrapped already)
                current = next(iter(getattr(current, "__args__", ())), None)
            continue
        field_info = getattr(current, "model_fields", {}).get(part)
        if field_info is None:
            return []
        current = field_info.annotation
        # `Section | None`: the keys are the section's.
        current = next((arg for arg in get_args(current) if hasattr(arg, "model_fields")), current)
    return sorted(getattr(current, "model_fields", {}))


# --- email addresses ---------------------------------------------------------------------------


def check_email(value: str) -> str:
    """The address in normalised form, or ValueError saying what is wrong with it.

    Only plain ASCII addresses pass: the mailer does not speak SMTPUTF8, and an
    address that would fail at send time must fail here, where the file is named.
    Display names, comments, groups and control characters are all refused, and so
    is a domain without a dot other than `localhost` (`alice@gmailcom` is a typo).
    """
    if not isinstance(value, str):
        raise ValueError('must be an email address such as "alice@example.org"')
    return value if _is_plain_email(value) else _checked_by_library(value)


def _checked_by_library(value: str) -> str:
    if not value.isascii():
        raise ValueError("must be an ASCII address: internationalised addresses (SMTPUTF8) are not supported")
    local, _, domain = value.rpartition("@")
    # `localhost` is a fine domain for a local sink or outbox; the library refuses it as special-use,
    # so check the local part against a stand-in domain and keep the original.
    on_localhost = domain.lower() == "localhost"
    try:
        checked = validate_email(f"{local}@example.org" if on_localhost else value, check_deliverability=False,
                                 allow_smtputf8=False, globally_deliverable=False)
    except EmailNotValidError as exc:
        raise ValueError(f'is not a valid email address ({exc}); use a plain address such as "alice@example.org"') \
            from None
    if on_localhost:
        return f"{checked.local_part}@localhost"
    if "." not in checked.ascii_domain:
        raise ValueError(f"has no dot in its domain {checked.ascii_domain!r} (only localhost may go without one); "
                         'use a full domain such as "alice@example.org"')
    return str(checked.normalized)


# Nearly every address is of this shape, which the library accepts as it is (a test compares them on
# thousands of addresses): letters, digits and ._%+- in the local part, lowercase letter/digit/hyphen
# labels in the domain, and a letters-only last label. The library's full check costs about 0.1 ms,
# and a digest run makes it twice per subscriber (reading the file, and building the message).
_PLAIN_EMAIL = re.compile(r"([A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*)@((?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+([a-z]+))")
_SPECIAL_USE = frozenset(SPECIAL_USE_DOMAIN_NAMES)


def _is_plain_email(value: str) -> bool:
    """Whether `value` is a plain address the library would return unchanged; False means "ask the library"."""
    match = _PLAIN_EMAIL.fullmatch(value) if len(value) <= 254 else None  # bounded: the pattern backtracks
    if match is None:
        return False
    local, domain, top = match.groups()
    return (len(local) <= 64 and len(domain) <= 253 and len(top) >= 2
            and "--" not in domain and top not in _SPECIAL_USE
            and all(len(label) <= 63 for label in domain.split(".")))


# --- schedules -------------------------------------------------------------------------------

CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9]))?")


def check_clock(value: str) -> time:
    """"07:30" (24-hour, local) as a time; seconds ("07:30:15") are allowed for tests and tight schedules."""
    match = CLOCK.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError('must look like "07:30" (24-hour clock, quoted in YAML)')
    hour, minute, second = match.groups()
    return time(int(hour), int(minute), int(second or 0))


def check_timezone(value: str) -> str:
    """`value` if it is an IANA time zone name; ValueError with the closest name when it is misspelt."""
    if isinstance(value, str) and value in _zone_names():
        try:
            ZoneInfo(value)
            return value
        except (ZoneInfoNotFoundError, ValueError):
            pass
    close = difflib.get_close_matches(str(value), sorted(_zone_names()), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else '; use an IANA name such as "Europe/Berlin" or "UTC"'
    raise ValueError(f"{quoted(value, 60)} is not a time zone{hint}")


def time_zone_names() -> list[str]:
    """Every IANA zone name `check_timezone` accepts, sorted (for a form's select)."""
    return sorted(_zone_names())


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones()) | {"UTC"}
