"""The dependency graph: compiled once into index arrays, then passed around immutable.

Nodes are numbered in input order; ``preds``/``succs`` are tuples of indices, so the executor
releases a step by decrementing a counter, never by scanning the graph.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from accord import errors


@dataclass(frozen=True, slots=True)
class Graph:
    ids: tuple[str, ...]
    preds: tuple[tuple[int, ...], ...]
    succs: tuple[tuple[int, ...], ...]
    order: tuple[int, ...]  # a topological order

    @classmethod
    def compile(cls, nodes: Iterable[tuple[str, Sequence[str]]]) -> Graph:
        """Build from ``(id, depends_on)`` pairs; ``GraphError`` names unknown ids and cycles."""
        pairs = list(nodes)
        index: dict[str, int] = {}
        for i, (node, _) in enumerate(pairs):
            if node in index:
                raise errors.GraphError(f"duplicate id {node!r}")
            index[node] = i
        preds: list[tuple[int, ...]] = []
        succs: list[list[int]] = [[] for _ in pairs]
        for i, (node, deps) in enumerate(pairs):
            mine = []
            for dep in dict.fromkeys(deps):  # de-duplicated, order kept
                j = index.get(dep)
                if j is None:
                    raise errors.GraphError(f"{node!r} depends on unknown id {dep!r}")
                mine.append(j)
                succs[j].append(i)
            preds.append(tuple(mine))
        order = _topological(preds, succs)
        if len(order) < len(pairs):
            raise errors.GraphError(f"dependency cycle: {' → '.join(_cycle(pairs, preds, order))}")
        return cls(
            ids=tuple(node for node, _ in pairs),
            preds=tuple(preds),
            succs=tuple(tuple(s) for s in succs),
            order=tuple(order),
        )

    def __len__(self) -> int:
        return len(self.ids)

    def reversed(self) -> Graph:
        """The same nodes with every edge turned round (for pruning and reverting)."""
        return Graph(
            ids=self.ids, preds=self.succs, succs=self.preds, order=tuple(reversed(self.order))
        )


def _topological(preds: list[tuple[int, ...]], succs: list[list[int]]) -> list[int]:
    remaining = [len(p) for p in preds]
    ready = deque(i for i, n in enumerate(remaining) if n == 0)
    order = []
    while ready:
        i = ready.popleft()
        order.append(i)
        for s in succs[i]:
            remaining[s] -= 1
            if remaining[s] == 0:
                ready.append(s)
    return order


def _cycle(
    pairs: list[tuple[str, Sequence[str]]], preds: list[tuple[int, ...]], order: list[int]
) -> list[str]:
    """One cycle among the nodes a topological sort could not place, as ids."""
    stuck = set(range(len(pairs))) - set(order)
    start = min(stuck)
    path: list[int] = []
    seen: dict[int, int] = {}
    node = start
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = next(p for p in preds[node] if p in stuck)
    loop = [*path[seen[node] :], node]
    return [pairs[i][0] for i in reversed(loop)]
