"""text.py: one-line header text, shortening, terminal-safe output, capped quoting."""

from __future__ import annotations

from newsletter.text import for_terminal, one_line, quoted, shorten


def test_one_line_turns_every_break_and_control_into_a_space() -> None:
    assert one_line("a\r\nb\nc\rd\u2028e\x85f\x00g\t h\u2029i\x0cj") == "a b c d e f g h i j"


def test_shorten_cuts_on_a_word_boundary_and_fits_the_limit() -> None:
    assert shorten("one two three four", 12) == "one two…"
    assert shorten("  spaced \n out  ", 50) == "spaced out"
    assert shorten("x" * 200, 10) == "x" * 9 + "…"
    long = shorten("word " * 100, 150)
    assert len(long) <= 150 and long.endswith("…")


def test_for_terminal_removes_escape_sequences_and_controls() -> None:
    hostile = "Title \x1b[2J\x1b[31mred\x1b[0m \x1b]0;owned\x07 bell\x07 back\x08space"
    cleaned = for_terminal(hostile)
    assert "\x1b" not in cleaned and not any(ord(ch) < 32 for ch in cleaned)
    assert cleaned == "Title red bell back space"


def test_quoted_caps_what_an_error_message_repeats() -> None:
    assert quoted("short") == "'short'"
    capped = quoted("lol " * 10_000, limit=40)
    assert len(capped) <= 42 and capped.endswith("…'")
    assert quoted(True) == "True"
