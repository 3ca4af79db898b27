"""Parsing ``project.yml``: PyYAML's safe loader, strict about keys, bounded in effort.

Limits (documented in the README; each breach is one :class:`ProjectError` line naming
the file, line and column):

* :data:`MAX_PROJECT_BYTES`: ``project.yml`` itself (read through
  :func:`~handoff_provider.core.load.safe_tree.read_regular_file`, so a FIFO is refused too);
* :data:`MAX_DEPTH`: nesting of mappings/lists (PyYAML composes recursively: a file
  nested a thousand levels deep would otherwise end in a ``RecursionError``);
* :data:`MAX_NODES`: values in the document *after* expanding aliases. An alias is a
  reference to an already composed node, so ``a: &a [x, x]``, ``b: &b [*a, *a]``, ...
  ("billion laughs") parses in microseconds and only explodes when the document is
  copied or serialised; counting the expanded size while composing stops it before.
  An alias used inside the node it names (``&d {self: *d}``) is refused: the compiled
  document is JSON, which has no cycles.

Dates stay strings (``2024-01-01`` is meant for templates); duplicate keys and
non-string keys are errors.

Scanning and parsing (nearly all of the time a load takes) are libyaml's, through PyYAML's
``CParser``, when PyYAML was built with it (its wheels are); composing stays PyYAML's
Python composer, which is where the limits above are enforced. Without libyaml the pure
Python parser does the same.
"""

from __future__ import annotations

from typing import Any, cast

import yaml
from yaml.composer import Composer, ComposerError
from yaml.error import Mark
from yaml.events import AliasEvent

from handoff_provider.core.errors import ProjectError
from handoff_provider.core.load.document_limits import (  # re-exported: the limits it enforces
    MAX_DEPTH,
    MAX_NODES,
    MAX_PROJECT_BYTES,
    type_name,
)

__all__ = ["MAX_DEPTH", "MAX_NODES", "MAX_PROJECT_BYTES", "StrictLoader", "parse_yaml"]


class YamlLimitError(ComposerError):
    """A limit of this module was exceeded (not a syntax error)."""


class _PythonParser(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):
    """PyYAML's own reader, scanner and parser (for a PyYAML built without libyaml)."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)


_Parser: Any
try:
    from yaml._yaml import CParser as _Parser  # libyaml (what yaml.cyaml re-exports)
except ImportError:  # pragma: no cover - PyYAML without libyaml
    _Parser = _PythonParser


class StrictLoader(Composer, _Parser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """Safe loader with the limits above; rejects duplicate and non-string keys.

    PyYAML's ``SafeLoader`` made of the same parts, with libyaml's parser when there is
    one; the composer comes first so that the document is composed (and bounded) here,
    from the parser's events.
    """

    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)
        Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self._depth = 0
        self._nodes = 0
        self._open_anchors: set[str] = set()
        self._anchor_sizes: dict[str, int] = {}

    def _count(self, nodes: int, mark: Any) -> None:
        self._nodes += nodes
        if self._nodes > MAX_NODES:
            raise YamlLimitError(
                None,
                None,
                f"more than {MAX_NODES} values once aliases are expanded (alias bomb?)",
                mark,
            )

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            if event.anchor in self._open_anchors:
                raise YamlLimitError(
                    None,
                    None,
                    f"alias *{event.anchor} is used inside the node it names "
                    "(recursive aliases can't be compiled to JSON)",
                    cast("Mark | None", event.start_mark),  # a yaml.error.Mark or libyaml's
                )
            node = super().compose_node(parent, index)
            self._count(self._anchor_sizes.get(event.anchor or "", 1), event.start_mark)
            return node
        if self._depth >= MAX_DEPTH:
            raise YamlLimitError(
                None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark
            )
        anchor = event.anchor
        before = self._nodes
        self._depth += 1
        if anchor is not None:
            self._open_anchors.add(anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open_anchors.discard(anchor or "")
        self._count(1, event.start_mark)
        if anchor is not None:
            self._anchor_sizes[anchor] = self._nodes - before
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[str, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"keys must be strings (found {type_name(key)} key; quote it)",
                    key_node.start_mark,
                )
            if key in first_line:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key '{key}' (first at line {first_line[key] + 1})",
                    key_node.start_mark,
                )
            first_line[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


# Dates stay strings ("2024-01-01"), as they are meant for templates and commands.
StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


#: libyaml's own nesting bound (1000 levels): its scanner looks ahead through a line of
#: ``[[[[...`` (a possible simple key) and may meet it before the composer meets ours.
_LIBYAML_NESTING = "exceeded maximum nesting depth"


def parse_yaml(text: str, *, source: str) -> Any:
    """``text`` parsed with :class:`StrictLoader`; errors are one line naming ``source``."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # safe: SafeConstructor
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        limit = isinstance(exc, YamlLimitError)
        if problem == _LIBYAML_NESTING:  # flow collections, met while scanning ahead
            problem, limit = f"nested deeper than {MAX_DEPTH} levels", True
        kind = "" if limit else "YAML syntax error: "
        raise ProjectError(f"{source}: {where}{kind}{problem}") from None
    except yaml.YAMLError as exc:
        raise ProjectError(f"{source}: YAML syntax error: {type(exc).__name__}") from None
