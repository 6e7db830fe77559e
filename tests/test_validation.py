"""The shared YAML reader, error wording and email check: bounds hold, messages stay one short line."""

from __future__ import annotations

import random

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from newsletter import validation
from newsletter.validation import (
    CONFIG_LIMITS,
    SUBSCRIBER_LIMITS,
    YamlLimits,
    check_email,
    describe_validation_error,
    dump_yaml,
    read_yaml_mapping,
)

SMALL = YamlLimits(max_bytes=4096, max_aliases=4, max_depth=5, max_nodes=100)


class Refused(Exception):
    pass


def read(tmp_path, text: str, limits: YamlLimits = SMALL) -> dict:
    path = tmp_path / "f.yaml"
    path.write_text(text, encoding="utf-8")
    return read_yaml_mapping(path, Refused, limits)


def refusal(tmp_path, text: str, limits: YamlLimits = SMALL) -> str:
    with pytest.raises(Refused) as caught:
        read(tmp_path, text, limits)
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path / "f.yaml") in message
    return message


def billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 "lol"']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\ntopics: *a{levels}\n"


def test_a_plain_mapping_reads_as_written(tmp_path):
    assert read(tmp_path, "a: 1\nb: [x, 'y']\nc: {d: null}\n") == {"a": 1, "b": ["x", "y"], "c": {"d": None}}
    assert read(tmp_path, "") == {}


def test_billion_laughs_is_refused_at_the_first_alias_over_the_limit(tmp_path):
    message = refusal(tmp_path, billion_laughs(), SUBSCRIBER_LIMITS)
    assert len(message) < 300
    assert f"{tmp_path / 'f.yaml'}:2: YAML aliases (*name) are not allowed in this file" in message


def test_few_aliases_that_expand_too_far_are_refused(tmp_path):
    # Four aliases (within the limit) that multiply 30 written values into about 200.
    text = f"a: &a [{', '.join(['x'] * 30)}]\nb: &b [*a, *a]\nc: [*b, *b]\n"
    message = refusal(tmp_path, text)
    assert "aliases expand to more than 100 values or 5 levels" in message
    assert len(message) < 300


def test_aliases_within_every_limit_are_allowed(tmp_path):
    assert read(tmp_path, "a: &a [x, y]\nb: *a\n") == {"a": ["x", "y"], "b": ["x", "y"]}


def test_a_self_referencing_anchor_is_refused(tmp_path):
    assert "aliases expand to more than" in refusal(tmp_path, "a: &a [x, *a]\n")


@pytest.mark.parametrize("depth", [6, 100_000])
def test_deep_nesting_is_refused_before_the_parser_recurses(tmp_path, depth):
    message = refusal(tmp_path, "a: " + "[" * depth + "]" * depth + "\n", YamlLimits(10**6, 0, 5, 10**6))
    assert "nested more than 5 levels deep" in message
    assert f"{tmp_path / 'f.yaml'}:1:" in message


def test_too_many_values_are_refused(tmp_path):
    assert "holds more than 100 values" in refusal(tmp_path, f"a: [{', '.join(['x'] * 150)}]\n")


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path):
    message = refusal(tmp_path, "a: b\n" + "#" * 5000 + "\n")
    assert "larger than 4 KiB, the limit for this file" in message


def test_a_folder_or_a_non_utf8_file_is_one_line(tmp_path):
    (tmp_path / "f.yaml").mkdir()
    with pytest.raises(Refused, match="not a regular file"):
        read_yaml_mapping(tmp_path / "f.yaml", Refused, SMALL)
    (tmp_path / "g.yaml").write_bytes(b"a: \xff\n")
    with pytest.raises(Refused, match=r"g.yaml: not UTF-8 text \(bad byte at offset 3\)"):
        read_yaml_mapping(tmp_path / "g.yaml", Refused, SMALL)


def test_yaml_syntax_errors_keep_the_line_and_drop_the_context(tmp_path):
    message = refusal(tmp_path, "a: b\nc: [unclosed\n")
    assert message.startswith(f"{tmp_path / 'f.yaml'}:3: not valid YAML (")


def test_only_true_and_false_are_booleans(tmp_path):
    # YAML 1.2 core schema: what YAML 1.1 turned into booleans, a sexagesimal int or a date stays a string.
    data = read(tmp_path, "a: on\nb: off\nc: yes\nd: no\ne: true\nf: False\ng: 7:30\nh: 2026-03-20\ni: 0755\n")
    assert data == {"a": "on", "b": "off", "c": "yes", "d": "no", "e": True, "f": False, "g": "7:30",
                    "h": "2026-03-20", "i": 755}


@pytest.mark.parametrize("value", ["on", "0o17", "1e5", "09", "null", "~", "", "true", "- x", "a: b", "#c", "0x1F",
                                   ".inf", "O'Neil \"q\"", "tab\there", "\x07bell", "é", "7:30"])
def test_dumped_text_reads_back_to_the_same_strings(tmp_path, value):
    data = {"s": value, "l": [value, 5, 0.5, None, True]}
    assert read(tmp_path, dump_yaml(data)) == data


def test_both_limits_are_documented_values():
    assert (SUBSCRIBER_LIMITS.max_bytes, SUBSCRIBER_LIMITS.max_aliases) == (256 * 1024, 0)
    assert (CONFIG_LIMITS.max_bytes, CONFIG_LIMITS.max_aliases) == (1024 * 1024, 16)


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    count: int = 0
    words: list[int] = []


def test_validation_errors_quote_values_capped_and_are_counted_past_five(tmp_path):
    with pytest.raises(ValidationError) as caught:
        Model.model_validate({"count": "x" * 100_000, "words": ["w"] * 1000})
    message = describe_validation_error(tmp_path / "f.yaml", caught.value, Model)
    lines = message.splitlines()
    assert len(lines) == 6 and lines[-1] == f"{tmp_path / 'f.yaml'}: and 996 more problems"
    assert lines[0].startswith(f"{tmp_path / 'f.yaml'}: count: input should be a valid integer, got 'xxx")
    assert lines[0].endswith("(write the number without quotes)")
    assert len(message) < 1000


@pytest.mark.parametrize("address", ["ann@example.org", "ann+tag@mail.example.org", "digest@localhost"])
def test_plain_addresses_pass(address):
    assert check_email(address) == address


def test_the_fast_path_for_plain_addresses_agrees_with_the_library():
    # Addresses built from pieces near the fast path's edges: specials, capitals, digits, hyphens,
    # special-use and numeric top-level labels, labels and local parts one over their limits.
    rng = random.Random(7)
    locals_ = ["ann", "Ann.Lee", "a+b", "x_y%z", "o'neil", "a..b", ".ann", "ann.", "a-b", "{x}", "a" * 64, "a" * 65,
               "é", "a b", "ann!", "1", "-"]
    labels = ["example", "mail", "x", "Example", "a-b", "-ab", "ab-", "ab--cd", "xn--nxasmq6b", "1", "a" * 63,
              "a" * 64, "b2", "EXAMPLE"]
    tops = ["org", "io", "dev", "ORG", "x", "123", "test", "local", "localhost", "invalid", "onion", "arpa", "co-uk"]
    def pick(pieces: list[str]) -> str:  # the first three (plain) pieces half the time, so the fast path is met often
        return rng.choice(pieces[:3] if rng.random() < 0.5 else pieces)

    fast = agreed = 0
    for _ in range(4000):
        domain = ".".join([pick(labels) for _ in range(rng.randint(0, 3))] + [pick(tops)])
        address = f"{pick(locals_)}@{domain}"
        try:
            by_library: str | None = validation._checked_by_library(address)
        except ValueError:
            by_library = None
        if validation._is_plain_email(address):
            fast += 1
            assert by_library == address, address
        agreed += by_library is not None
    assert fast > 500 and agreed > fast  # the fast path is taken, and some valid addresses still go the long way
    assert validation._is_plain_email("a@" + "b" * 5000 + ".org") is False


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("ann@gmailcom", "has no dot in its domain 'gmailcom'"),
        ("x@b", "has no dot in its domain 'b'"),
        ("Ann <ann@example.org>", "is not a valid email address"),
        ("ann(comment)@example.org", "is not a valid email address"),
        ("team: ann@example.org;", "is not a valid email address"),
        ("ann\x01@example.org", "is not a valid email address"),
        ("ann@example.org\r\nBcc: eve@example.org", "is not a valid email address"),
        ("anné@example.org", "internationalised addresses (SMTPUTF8) are not supported"),
    ],
)
def test_addresses_the_mailer_cannot_send_are_refused(address, problem):
    with pytest.raises(ValueError) as caught:
        check_email(address)
    assert problem in str(caught.value)
