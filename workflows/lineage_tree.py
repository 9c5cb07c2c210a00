"""The lineage tree behind `/steward lineage`: what an asset was built from (up) or what depends on it
(down), walked a level at a time to a fixed depth.

Each level costs two queries however wide it is: one counts every parent's children, one fetches the
first few children of every parent (a window function ranks them). An asset is expanded once only:
where it turns up again (a shared dataset, or a loop hand-inserted into the edge table) it is listed
as a repeat without children, so the walk always ends. Caps keep the tree small enough to show:
at most `children_shown` children per parent and `level_shown` nodes per level, the rest collapsed
into a count; past `max_depth` the walk only counts how many more levels there are.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from workflows.enums import DEPENDENCY_EDGES, EdgeType
from workflows.models import Asset, Edge

MAX_DEPTH = 5
CHILDREN_SHOWN = 15
LEVEL_SHOWN = 40
# How far past the depth limit the walk keeps counting levels before it says "at least".
LEVELS_COUNTED = 50
# The edges a tree follows: dependencies only (a document is not something an asset is built from).
TREE_EDGES = tuple(t for t in EdgeType if t in DEPENDENCY_EDGES)
_CHUNK = 1000  # ids per IN (...) list, well under SQLite's and PostgreSQL's parameter limits
_EDGE_ORDER = {t: i for i, t in enumerate(EdgeType)}


class Direction(StrEnum):
    """Which way a lineage tree grows from its root."""

    UP = "up"      # what the asset was built from: it is the source of the edges followed
    DOWN = "down"  # what depends on it: it is the target of the edges followed


@dataclass
class TreeNode:
    """One asset in the tree, the edge types that join it to its parent, and its children."""

    asset: Asset
    edges: tuple[EdgeType, ...] = ()  # from the parent's point of view; empty for the root
    depth: int = 0
    children: list[TreeNode] = field(default_factory=list)
    hidden: int = 0        # children over the caps, collapsed into "…and N more"
    repeat: bool = False   # already in the tree elsewhere, so not expanded again
    cycle: bool = False    # the asset is one of its own ancestors here (a loop in the data)
    below: int = 0         # children past the depth limit, not walked
    path: frozenset[int] = field(default=frozenset(), repr=False)  # ancestor ids

    @property
    def edge(self) -> EdgeType | None:
        """The (first) edge type from the parent, or None for the root."""
        return self.edges[0] if self.edges else None


@dataclass
class LineageTree:
    """A walked tree with what the caps and the depth limit left out."""

    root: TreeNode
    direction: Direction
    max_depth: int
    levels_hidden: int = 0          # levels of lineage past max_depth that are not shown
    levels_hidden_at_least: bool = False  # the count stopped at LEVELS_COUNTED

    def nodes(self) -> Iterator[TreeNode]:
        """Every node but the root, depth first, in display order."""
        stack = list(reversed(self.root.children))
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    @property
    def hidden(self) -> int:
        """How many children the caps collapsed, over the whole tree."""
        return self.root.hidden + sum(n.hidden for n in self.nodes())


def lineage_tree(*, session: Session, asset: Asset, direction: Direction = Direction.UP,
                 max_depth: int = MAX_DEPTH, children_shown: int = CHILDREN_SHOWN,
                 level_shown: int = LEVEL_SHOWN) -> LineageTree:
    """Walk lineage from `asset` up or down to `max_depth`, a level at a time, capped and cycle-safe."""
    root = TreeNode(asset=asset)
    seen = {asset.id}
    frontier = [root]
    for depth in range(1, max_depth + 1):
        parents = [n for n in frontier if not n.repeat]
        if not parents:
            break
        ids = [n.asset.id for n in parents]
        counts = _child_counts(session, ids, direction)
        firsts = _first_children(session, [i for i in ids if counts.get(i)], direction, children_shown)
        budget = level_shown
        frontier = []
        for parent in parents:
            kids = firsts.get(parent.asset.id, [])[:max(0, min(children_shown, budget))]
            budget -= len(kids)
            parent.hidden = counts.get(parent.asset.id, 0) - len(kids)
            path = parent.path | {parent.asset.id}
            for edges, child in kids:
                node = TreeNode(asset=child, edges=edges, depth=depth, path=path,
                                repeat=child.id in seen, cycle=child.id in path)
                seen.add(child.id)
                parent.children.append(node)
                frontier.append(node)
    tree = LineageTree(root=root, direction=direction, max_depth=max_depth)
    cut = [n for n in frontier if not n.repeat and n.depth == max_depth]
    if cut:
        counts = _child_counts(session, [n.asset.id for n in cut], direction)
        for node in cut:
            node.below = counts.get(node.asset.id, 0)
        start = {n.asset.id for n in cut if n.below}
        tree.levels_hidden, tree.levels_hidden_at_least = _levels_below(session, start, seen, direction)
    return tree


def _ends(direction: Direction):
    # (the column of the asset we stand on, the column of the asset the edge leads to)
    return (Edge.source_id, Edge.target_id) if direction == Direction.UP else (Edge.target_id, Edge.source_id)


def _types() -> list[str]:
    return [t.value for t in TREE_EDGES]


def _chunks(ids: Iterable[int]) -> Iterator[list[int]]:
    ids = list(ids)
    for start in range(0, len(ids), _CHUNK):
        yield ids[start:start + _CHUNK]


def _child_counts(session: Session, parent_ids: list[int], direction: Direction) -> dict[int, int]:
    """How many distinct children each parent has (one query per chunk of parents)."""
    near, far = _ends(direction)
    counts: dict[int, int] = {}
    for chunk in _chunks(parent_ids):
        rows = session.execute(
            sa_select(col(near), func.count(func.distinct(col(far))))
            .where(col(near).in_(chunk), col(Edge.type).in_(_types())).group_by(col(near))
        ).all()
        counts.update({parent: count for parent, count in rows})
    return counts


def _first_children(session: Session, parent_ids: list[int], direction: Direction,
                    limit: int) -> dict[int, list[tuple[tuple[EdgeType, ...], Asset]]]:
    """The first `limit` children of each parent by slug, each with every edge type that joins them."""
    near, far = _ends(direction)
    found: dict[int, dict[int, tuple[list[EdgeType], Asset]]] = {}
    for chunk in _chunks(parent_ids):
        # dense_rank by slug: a child joined by two edge types (trained and tested on) counts once.
        rank = func.dense_rank().over(partition_by=col(near), order_by=col(Asset.slug)).label("rank")
        ranked = (
            sa_select(col(near).label("parent"), col(far).label("child"), col(Edge.type).label("type"), rank)
            .join(Asset, col(Asset.id) == col(far))
            .where(col(near).in_(chunk), col(Edge.type).in_(_types()))
            .subquery()
        )
        rows = session.exec(
            select(ranked.c.parent, ranked.c.type, Asset).join(Asset, col(Asset.id) == ranked.c.child)
            .where(ranked.c.rank <= limit).order_by(ranked.c.parent, ranked.c.rank)
        ).all()
        for parent, edge_type, child in rows:
            edges, _ = found.setdefault(parent, {}).setdefault(child.id, ([], child))
            edges.append(EdgeType(edge_type))
    return {
        parent: [(tuple(sorted(set(edges), key=_EDGE_ORDER.__getitem__)), child)
                 for edges, child in children.values()]
        for parent, children in found.items()
    }


def _levels_below(session: Session, start: set[int], seen: set[int],
                  direction: Direction) -> tuple[int, bool]:
    """How many more levels of assets not yet in the tree lie past `start` (ids only, a level at a time)."""
    near, far = _ends(direction)
    visited = set(seen)
    frontier, levels = start, 0
    while frontier:
        if levels == LEVELS_COUNTED:
            return levels, True
        found: set[int] = set()
        for chunk in _chunks(frontier):
            found.update(session.execute(
                sa_select(col(far)).where(col(near).in_(chunk), col(Edge.type).in_(_types())).distinct()
            ).scalars())
        frontier = found - visited
        if frontier:
            levels += 1
            visited |= frontier
    return levels, False
