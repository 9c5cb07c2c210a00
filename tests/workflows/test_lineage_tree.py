"""The lineage tree: shapes up and down, the depth limit, caps, repeats and loops, and batched queries."""

from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import event

from tests.factories import OTHER, make_asset
from workflows.db import transaction
from workflows.enums import AssetKind, EdgeType
from workflows.lineage_tree import Direction, LineageTree, TreeNode, lineage_tree
from workflows.models import Asset, Edge

E = EdgeType


def _tree(engine, asset, direction=Direction.UP, **caps) -> LineageTree:
    with transaction(engine) as session:
        return lineage_tree(session=session, asset=session.get(Asset, asset.id), direction=direction, **caps)


def _shape(node: TreeNode) -> list:
    """[(slug, edge labels, children)], with markers for repeats and loops, for compact assertions."""
    out = []
    for child in node.children:
        slug = child.asset.slug + ("!" if child.cycle else "*" if child.repeat else "")
        out.append((slug, ",".join(e.value for e in child.edges), _shape(child)))
    return out


def _graph(engine, policy, now):
    """raw <-derived_from- clean <-trained_on,tested_on- model -uses-> algo; model runs_on gpu;
    system uses model; second-system uses model."""
    a = {}
    a["raw"] = make_asset(engine, policy=policy, now=now, name="Raw events", owner_id=OTHER,
                          license="CC-BY-4.0")
    a["gpu"] = make_asset(engine, policy=policy, now=now, kind="infrastructure", name="GPU pool")
    a["clean"] = make_asset(engine, policy=policy, now=now, name="Clean events",
                            lineage={"derived_from": [a["raw"].id]})
    a["algo"] = make_asset(engine, policy=policy, now=now, kind="algorithm", name="Feature code")
    a["model"] = make_asset(engine, policy=policy, now=now, kind="model", name="Churn model",
                            lineage={"trained_on": [a["clean"].id], "tested_on": [a["clean"].id],
                                     "runs_on": [a["gpu"].id], "uses": [a["algo"].id]})
    a["system"] = make_asset(engine, policy=policy, now=now, kind="system", name="Retention bot",
                             lineage={"uses": [a["model"].id]})
    a["second"] = make_asset(engine, policy=policy, now=now, kind="system", name="Second system",
                             lineage={"uses": [a["model"].id, a["clean"].id]})
    make_asset(engine, policy=policy, now=now, kind="documentation", name="Retention bot card",
               details={"doc_type": "instructions_for_use"}, lineage={"documents": [a["system"].id]})
    return a


def test_the_up_tree_shows_what_an_asset_was_built_from(engine, policy, now):
    a = _graph(engine, policy, now)
    tree = _tree(engine, a["system"])
    assert tree.direction == Direction.UP and tree.root.asset.slug == "retention-bot"
    assert _shape(tree.root) == [
        ("churn-model", "uses", [
            ("clean-events", "trained_on,tested_on", [("raw-events", "derived_from", [])]),
            ("feature-code", "uses", []),
            ("gpu-pool", "runs_on", []),
        ]),
    ]
    assert tree.levels_hidden == 0 and tree.hidden == 0
    # each node knows its edge from the parent; the documentation is not something it was built from
    model = tree.root.children[0]
    assert model.edge == E.USES and model.depth == 1 and model.children[0].depth == 2


def test_the_down_tree_shows_what_depends_on_an_asset(engine, policy, now):
    a = _graph(engine, policy, now)
    tree = _tree(engine, a["raw"], Direction.DOWN)
    assert _shape(tree.root) == [
        ("clean-events", "derived_from", [
            ("churn-model", "trained_on,tested_on", [
                ("retention-bot", "uses", []),
                # reached twice: listed as a repeat where it is deeper
                ("second-system*", "uses", []),
            ]),
            ("second-system", "uses", []),
        ]),
    ]
    assert _shape(_tree(engine, a["system"], Direction.DOWN).root) == []


def test_the_tree_stops_at_depth_five_and_counts_the_levels_it_did_not_show(engine, policy, now):
    chain = [make_asset(engine, policy=policy, now=now, name="Level 0")]
    for level in range(1, 9):
        chain.append(make_asset(engine, policy=policy, now=now, name=f"Level {level}",
                                lineage={"derived_from": [chain[-1].id]}))
    tree = _tree(engine, chain[-1])
    nodes = list(tree.nodes())
    assert [n.asset.slug for n in nodes] == [f"level-{i}" for i in (7, 6, 5, 4, 3)]
    assert max(n.depth for n in nodes) == 5
    assert nodes[-1].below == 1 and all(n.below == 0 for n in nodes[:-1])
    assert tree.levels_hidden == 3 and not tree.levels_hidden_at_least
    # exactly five levels: nothing hidden
    assert _tree(engine, chain[5]).levels_hidden == 0
    assert _tree(engine, chain[0], Direction.DOWN).levels_hidden == 3
    assert _tree(engine, chain[-1], max_depth=2).levels_hidden == 6


def test_children_over_the_cap_collapse_into_a_count(engine, policy, now):
    datasets = [make_asset(engine, policy=policy, now=now, name=f"Data {i:02d}") for i in range(18)]
    model = make_asset(engine, policy=policy, now=now, kind="model", name="Wide model",
                       lineage={"trained_on": [d.id for d in datasets]})
    tree = _tree(engine, model)
    assert [n.asset.slug for n in tree.root.children] == [f"data-{i:02d}" for i in range(15)]
    assert tree.root.hidden == 3 and tree.hidden == 3
    # and down: one dataset used by the model, shown once
    down = _tree(engine, datasets[0], Direction.DOWN)
    assert _shape(down.root) == [("wide-model", "trained_on", [])]


def test_a_level_over_its_cap_collapses_the_rest_of_that_level(engine, policy, now):
    leaves = [make_asset(engine, policy=policy, now=now, name=f"Leaf {i}") for i in range(4)]
    mids = [make_asset(engine, policy=policy, now=now, name=f"Mid {i}",
                       lineage={"derived_from": [leaf.id for leaf in leaves]}) for i in range(3)]
    top = make_asset(engine, policy=policy, now=now, name="Top",
                     lineage={"derived_from": [m.id for m in mids]})
    tree = _tree(engine, top, children_shown=3, level_shown=5)
    first, second, third = tree.root.children
    # level 2 has room for 5: the first mid shows 3 (its cap), the second 2, the third none
    assert [len(first.children), len(second.children), len(third.children)] == [3, 2, 0]
    assert [first.hidden, second.hidden, third.hidden] == [1, 2, 4]
    assert tree.hidden == 7


def _add_edges(engine, *pairs: tuple[Asset, Asset], edge_type: EdgeType = E.DERIVED_FROM) -> None:
    """Insert edges directly, past the service's cycle check: the data a bug or a hand edit could leave."""
    with transaction(engine) as session:
        for source, target in pairs:
            session.add(Edge(source_id=source.id, target_id=target.id, type=edge_type, created_by="U0HAND01",
                             created_at=source.created_at))


def test_a_hand_inserted_cycle_ends_the_walk(engine, policy, now):
    a = make_asset(engine, policy=policy, now=now, name="Alpha")
    b = make_asset(engine, policy=policy, now=now, name="Beta", lineage={"derived_from": [a.id]})
    c = make_asset(engine, policy=policy, now=now, name="Gamma", lineage={"derived_from": [b.id]})
    _add_edges(engine, (a, c), (b, b))  # alpha -> gamma closes a loop; beta -> beta loops on itself
    for direction in Direction:
        tree = _tree(engine, c, direction)
        nodes = list(tree.nodes())
        assert len(nodes) <= 4 and tree.levels_hidden == 0
        assert any(n.cycle for n in nodes)
    assert _shape(_tree(engine, c).root) == [
        ("beta", "derived_from", [("alpha", "derived_from", [("gamma!", "derived_from", [])]),
                                  ("beta!", "derived_from", [])]),
    ]


def test_a_cycle_past_the_depth_limit_still_ends_the_count(engine, policy, now):
    chain = [make_asset(engine, policy=policy, now=now, name="Hop 0")]
    for hop in range(1, 8):
        chain.append(make_asset(engine, policy=policy, now=now, name=f"Hop {hop}",
                                lineage={"derived_from": [chain[-1].id]}))
    _add_edges(engine, (chain[0], chain[3]))  # hop-0 -> hop-3: a loop below the cut
    tree = _tree(engine, chain[-1])
    assert tree.levels_hidden == 2  # hop-1 and hop-0; hop-3 is already shown
    assert not tree.levels_hidden_at_least


@contextmanager
def _count_queries(engine):
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_each_level_costs_a_fixed_number_of_queries_however_wide(engine, policy, now):
    with transaction(engine) as session:
        def asset(slug: str, kind: AssetKind = AssetKind.DATASET) -> Asset:
            row = Asset(slug=slug, kind=kind, name=slug, owner_id="U0OWNER1", created_by="U0OWNER1",
                        created_at=now, updated_at=now, details={})
            session.add(row)
            return row
        root = asset("root", AssetKind.MODEL)
        level1 = [asset(f"a-{i}") for i in range(10)]
        level2 = [asset(f"b-{i}") for i in range(30)]
        session.flush()
        session.add_all([Edge(source_id=root.id, target_id=x.id, type=E.TRAINED_ON, created_by="U0OWNER1",
                              created_at=now) for x in level1])
        session.add_all([Edge(source_id=x.id, target_id=y.id, type=E.DERIVED_FROM, created_by="U0OWNER1",
                              created_at=now)
                         for i, x in enumerate(level1) for y in level2[i * 3:i * 3 + 3]])
        root_id = root.id
    with transaction(engine) as session:
        root = session.get(Asset, root_id)
        with _count_queries(engine) as statements:
            tree = lineage_tree(session=session, asset=root)
    assert len(list(tree.nodes())) == 40
    # two per level that has parents (counts, first children): levels 1, 2 and 3 (which finds nothing)
    assert 2 <= len(statements) <= 6, statements
