"""`{% shared KEY as NAME %}...{% endshared %}`: a piece of a template rendered once per KEY and reused.

A run shows the same few hundred papers to thousands of subscribers, and laying
out a paper (escaping its title and abstract, wrapping them, its links) was most
of the cost of rendering an email. The templates mark that part of a paper as
shared; its output is kept per renderer and reused for everyone who gets the paper.

What makes reuse safe is checked when the template is compiled, not trusted: the
block sees only NAME (bound to KEY) and names it sets itself, never the template's
variables, so nothing of one subscriber (their links, reasons, name, rank) can be
cached into another's email. Including other templates is refused for the same
reason. KEY is compared by equality (a paper's view part is compared by identity,
views.PaperPart), so only equal keys share output.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator

from jinja2 import nodes
from jinja2.environment import Environment
from jinja2.exceptions import TemplateSyntaxError
from jinja2.ext import Extension
from jinja2.parser import Parser

# Pieces kept per template environment before the store starts again: a run has a few hundred papers;
# a long-lived renderer (the daemon's, the preview server's) must not grow without end.
PIECE_LIMIT = 4096
_FORBIDDEN = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)
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
            nodes.Assign(store(piece), nodes.Filter(load(key_var), _GET, [block], [], None, None)),
            nodes.If(missing, [nodes.Assign(store(name), load(key_var)), nodes.AssignBlock(store(piece), keep, body)],
                     [], []),
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
    """Refuse a shared block that could show anything but its key: its output is reused for others."""
    for found in _walk(body, _FORBIDDEN):
        parser.fail("a shared block cannot include or import other templates", found.lineno)
    names = [n for n in _walk(body, (nodes.Name,)) if isinstance(n, nodes.Name)]
    own = {name} | {n.name for n in names if n.ctx in ("store", "param")}  # what the block sets itself
    if any(n.startswith(_OWN_PREFIX) for n in own):  # the block's key and piece must stay what the tag set
        parser.fail(f"a shared block cannot set names starting with {_OWN_PREFIX!r}", lineno)
    for used in names:
        if used.ctx == "load" and used.name not in own:
            raise TemplateSyntaxError(
                f"a shared block may use only {name!r} (its key), not {used.name!r}: its output is "
                "reused for every email with the same key", used.lineno or lineno, parser.name, parser.filename)


def _walk(body: list[nodes.Node], kinds: tuple[type[nodes.Node], ...]) -> Iterator[nodes.Node]:
    """Every node of these kinds in the block, its top-level statements included."""
    for node in body:
        if isinstance(node, kinds):
            yield node
        yield from node.find_all(kinds)
