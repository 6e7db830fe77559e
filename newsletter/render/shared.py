"""`{% shared KEY as NAME %}...{% endshared %}`: a piece of a template rendered once per KEY and reused.

A run shows the same few hundred papers to thousands of subscribers, and laying
out a paper (escaping its title and abstract, wrapping them, its links) was most
of the cost of rendering an email. The templates mark that part of a paper as
shared; its output is kept per renderer and reused for everyone who gets the paper.

What makes reuse safe is checked when the template is compiled, not trusted: the
block may read only NAME (bound to KEY) and names it sets itself, never the
template's variables, so nothing of one subscriber (their links, reasons, name,
rank) can be cached into another's email; statements whose scoping the check does
not follow (include, with, macros...) are refused. Filters see only what they are
given (the installed ones; none reads the template's variables). KEY is compared by
equality (a paper's view part is compared by identity, views.PaperPart), so only
equal keys share output.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from jinja2 import nodes
from jinja2.environment import Environment
from jinja2.exceptions import TemplateSyntaxError
from jinja2.ext import Extension
from jinja2.parser import Parser

# Pieces kept per template environment before the store starts again: a run has a few hundred papers;
# a long-lived renderer (the daemon's, the preview server's) must not grow without end.
PIECE_LIMIT = 4096
_GET, _PUT = "shared piece", "keep shared piece"
_OWN_PREFIX = "_shared_"  # the names the tag keeps its key and piece in


class SharedPieces(Extension):
    """Adds the `shared` tag to an environment; each environment keeps its own pieces."""

    tags = {"shared"}

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.pieces: dict[tuple[int, Hashable], str] = {}
        self._blocks = 0  # numbers each block ever compiled, so a recompiled template never meets old pieces
        # Reached through filters, which Jinja calls directly, not through a call and a caller macro (twice
        # the cost of what they save). The names have a space: no template can name them.
        environment.filters[_GET] = self._get
        environment.filters[_PUT] = self._put

    def parse(self, parser: Parser) -> list[nodes.Node]:
        """The block as plain nodes: look the piece up; when missing, render the body (seeing only NAME)
        into it and keep it; then output it."""
        lineno = next(parser.stream).lineno
        key = parser.parse_expression()
        parser.stream.expect("name:as")
        name = parser.stream.expect("name").value
        body = parser.parse_statements(("name:endshared",), drop_needle=True)
        _check_self_contained(body, name, lineno, parser)
        self._blocks += 1
        block = nodes.Const(self._blocks)
        key_var, piece = f"{_OWN_PREFIX}key_{self._blocks}", f"{_OWN_PREFIX}piece_{self._blocks}"

        def load(var: str) -> nodes.Name:
            return nodes.Name(var, "load")

        def store(var: str) -> nodes.Name:
            return nodes.Name(var, "store")

        keep = nodes.Filter(None, _PUT, [block, load(key_var)], [], None, None)
        missing = nodes.Test(load(piece), "none", [], [], None, None)
        made = [
            nodes.Assign(store(key_var), key),
            # NAME is set whether or not the piece is found: set only when missing, Jinja would look it up in
            # the context at every turn of the paper loop in case the branch did not run.
            nodes.Assign(store(name), load(key_var)),
            nodes.Assign(store(piece), nodes.Filter(load(key_var), _GET, [block], [], None, None)),
            nodes.If(missing, [nodes.AssignBlock(store(piece), keep, body)], [], []),
            nodes.Output([load(piece)]),
        ]
        return [node.set_lineno(lineno) for node in made]

    def _get(self, key: Hashable, block: int) -> str | None:
        return self.pieces.get((block, key))

    def _put(self, piece: str, block: int, key: Hashable) -> str:
        if len(self.pieces) >= PIECE_LIMIT:
            self.pieces.clear()
        self.pieces[block, key] = piece
        return piece


def _check_self_contained(body: list[nodes.Node], name: str, lineno: int, parser: Parser) -> None:
    """Refuse a shared block that could show anything but its key: its output is reused for others.

    Each name the block reads must be bound inside it at that point: its key's name, a loop variable
    inside its loop, or a name it set before (not inside an `if`, which may not have run). A name read
    before the block sets it, or under a loop it does not belong to, would be the template's own variable.
    Only text, output, if, for and set are allowed: other statements (with, macros, calls, filter blocks,
    includes) carry scopes or contexts of their own that this check does not follow.
    """
    try:
        _check_statements(body, frozenset({name}))
    except _Leak as leak:
        raise TemplateSyntaxError(f"a shared block {leak.args[0]}: its output is reused for every email with "
                                  f"the same key, so it may use only {name!r} (its key) and names it sets itself",
                                  leak.args[1] or lineno, parser.name, parser.filename) from None


class _Leak(Exception):
    """(what is wrong, line): raised by the walk, turned into a TemplateSyntaxError naming the template."""


def _check_statements(statements: Sequence[nodes.Node], bound: frozenset[str]) -> None:
    for node in statements:
        if isinstance(node, nodes.Output):
            _check_reads(node.nodes, bound)
        elif isinstance(node, nodes.If):
            _check_reads([node.test], bound)
            _check_statements(node.body, bound)  # what a branch sets stays in it: it may not have run
            _check_statements(node.elif_, bound)
            _check_statements(node.else_, bound)
        elif isinstance(node, nodes.For):
            _check_reads([node.iter], bound)
            inside = bound | _targets(node.target) | {"loop"}
            _check_reads([node.test] if node.test is not None else [], inside)
            _check_statements(node.body, inside)
            _check_statements(node.else_, bound)
        elif isinstance(node, nodes.Assign):
            _check_reads([node.node], bound)
            bound = bound | _targets(node.target)
        else:
            raise _Leak(f"cannot hold a {type(node).__name__} statement (only text, output, if, for and set)",
                        node.lineno)


def _check_reads(expressions: Sequence[nodes.Node], bound: frozenset[str]) -> None:
    for expression in expressions:
        names = [expression] if isinstance(expression, nodes.Name) else []
        for used in names + list(expression.find_all(nodes.Name)):
            if isinstance(used, nodes.Name) and used.name not in bound:
                raise _Leak(f"reads {used.name!r}, which it has not set", used.lineno)


def _targets(target: nodes.Node) -> frozenset[str]:
    """The names a for or set binds; only plain names (not namespace attributes, which live outside)."""
    names = [target] if isinstance(target, nodes.Name) else list(target.find_all(nodes.Name))
    if not isinstance(target, (nodes.Name, nodes.Tuple)) or not names:
        raise _Leak("can set only plain names", target.lineno)
    bound = frozenset(n.name for n in names if isinstance(n, nodes.Name))
    if any(n.startswith(_OWN_PREFIX) for n in bound):  # the tag's own key and piece must stay what it set
        raise _Leak(f"cannot set names starting with {_OWN_PREFIX!r}", target.lineno)
    return bound
