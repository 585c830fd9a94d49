"""Where things are in a YAML (or JSON) document: line numbers for error messages.

Parsing for data uses the fast C loader; positions are only needed when something is wrong, so
the document is composed into nodes (which keep their marks) only then, and only once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml


class _TextDates(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The fast safe loader, keeping timestamps as the text they were written as.

    YAML 1.1 turns ``2026-03-29`` into a date and raises a line-less ``ValueError`` for
    ``2026-02-30``; accord's models validate dates themselves, and a file's content that
    happens to look like a date must stay a string.
    """


_TextDates.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_scalar)
LOADER: type[yaml.SafeLoader] = _TextDates


class Locator:
    """Line numbers of paths in a document, composed once (JSON is YAML, so one composer)."""

    def __init__(self, text: str) -> None:
        try:
            self.root: yaml.Node | None = yaml.compose(text, Loader=LOADER)
            self.ok = True
        except yaml.YAMLError:
            self.root, self.ok = None, False

    def __call__(self, path: Sequence[Any]) -> int | str:
        """The 1-based line of the deepest node along ``path``."""
        if not self.ok:
            return "?"
        node = self.root
        if node is None:
            return 1
        for part in path:
            child = None
            if isinstance(node, yaml.MappingNode):
                child = next((v for k, v in node.value if k.value == part), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                child = node.value[part] if 0 <= part < len(node.value) else None
            if child is None:
                break
            node = child
        return int(node.start_mark.line) + 1
