"""The lineage tree and impact notice builders as data: packing, Slack's limits, notes and escaping."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.views.lineage import impact_notice, lineage_blocks, pack_lines, tree_lines
from workflows.enums import AccessLevel, AssetKind, EdgeType, GrantStatus, RiskTier, Sensitivity
from workflows.impact import Affected
from workflows.lineage_tree import Direction, LineageTree, TreeNode
from workflows.models import Asset, Grant

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _asset(i: int, kind: AssetKind = AssetKind.DATASET, **fields) -> Asset:
    values = {"slug": f"asset-{i}", "kind": kind, "name": f"Asset {i}", "owner_id": "U0OWNER1",
              "created_by": "U0OWNER1", "created_at": NOW, "updated_at": NOW, "details": {}, **fields}
    return Asset(id=i, **values)


def _texts(blocks) -> list[str]:
    out = []
    for block in blocks:
        if "text" in block:
            out.append(block["text"]["text"])
        out += [e["text"] for e in block.get("elements", []) if isinstance(e.get("text"), str)]
    return out


@pytest.mark.parametrize("limit", [50, 200, 3000])
def test_pack_lines_never_exceeds_the_limit_nor_splits_a_line(limit):
    lines = [f"line {i} " + "x" * (i * 7 % 180) for i in range(300)]
    texts = pack_lines(lines, limit=limit)
    assert all(len(t) <= limit for t in texts)
    if limit >= 200:
        assert "\n".join(texts).split("\n") == lines
    assert pack_lines([]) == []


def test_a_huge_tree_is_cut_to_fifty_blocks_and_says_so():
    root = TreeNode(asset=_asset(0, AssetKind.MODEL))
    for i in range(1, 2001):
        root.children.append(TreeNode(asset=_asset(i, name="&" * 150, license="<" * 100), depth=1,
                                      edges=(EdgeType.TRAINED_ON,)))
    tree = LineageTree(root=root, direction=Direction.UP, max_depth=5)
    blocks = lineage_blocks(tree)
    assert len(blocks) == 50
    assert all(len(t) <= 3000 for t in _texts(blocks))
    assert "more lines did not fit in one message" in blocks[-1]["elements"][0]["text"]
    shown = sum(t.count("└") for t in _texts(blocks[1:-1]))
    assert blocks[-1]["elements"][0]["text"].startswith(f"{2000 - shown} more lines")


def test_lines_show_repeats_loops_collapses_and_the_depth_note():
    root = TreeNode(asset=_asset(0, AssetKind.SYSTEM), hidden=0)
    model = TreeNode(asset=_asset(1, AssetKind.MODEL, effective_tier=RiskTier.HIGH), depth=1,
                     edges=(EdgeType.USES,), hidden=4)
    data = TreeNode(asset=_asset(2, sensitivity=Sensitivity.RESTRICTED, contains_personal_data=True,
                                 license="MIT"),
                    depth=2, edges=(EdgeType.TRAINED_ON, EdgeType.TESTED_ON), below=2)
    loop = TreeNode(asset=_asset(0, AssetKind.SYSTEM), depth=2, edges=(EdgeType.USES,), repeat=True,
                    cycle=True)
    again = TreeNode(asset=_asset(3), depth=2, edges=(EdgeType.USES,), repeat=True)
    model.children = [data, loop, again]
    root.children = [model]
    tree = LineageTree(root=root, direction=Direction.UP, max_depth=2, levels_hidden=3)
    lines = tree_lines(tree)
    assert lines[0].startswith("└ _uses_ :brain: *Asset 1*") and ":red_circle: High" in lines[0]
    assert lines[1].startswith("\u2003\u2003└ _trained on, tested on_")
    assert "Restricted · *personal data* · license MIT · _2 more below_" in lines[1]
    assert "loops back to an asset above" in lines[2]
    assert "listed elsewhere in this tree" in lines[3]
    assert lines[4] == "\u2003\u2003└ _…and 4 more_"
    notes = lineage_blocks(tree)[-1]["elements"][0]["text"]
    assert "3 more levels not shown" in notes and "/steward lineage asset-2 up" in notes
    assert '4 more entries are collapsed into "…and N more"' in notes
    down = LineageTree(root=root, direction=Direction.DOWN, max_depth=2)
    assert tree_lines(down)[1].startswith("\u2003\u2003└ _used to train, used to test_")


def _grant(i: int, asset: Asset) -> Grant:
    return Grant(id=i, request_id=i, asset_id=asset.id, grantee_id=f"U0USER{i:03d}", level=AccessLevel.READ,
                 status=GrantStatus.ACTIVE, granted_at=NOW, expires_at=NOW)


def test_the_impact_notice_stays_within_limits_with_many_assets_and_grants():
    dataset = _asset(1, name="<!here> data")
    affected = []
    for i in range(2, 40):
        asset = _asset(i, AssetKind.MODEL, name="&" * 150, effective_tier=RiskTier.HIGH)
        affected.append(Affected(asset=asset, grants=tuple(_grant(i * 100 + j, asset) for j in range(30))))
    message = impact_notice(dataset=dataset, affected=affected, actor="U0OWNER1",
                            changes={"contains_personal_data": [False, True]},
                            recertify={g.id for a in affected for g in a.grants})
    assert len(message["blocks"]) <= 50 and len(message["text"]) <= 3000
    assert all(len(t) <= 3000 for t in _texts(message["blocks"]))
    text = " ".join(_texts(message["blocks"]))
    assert "<!here>" not in text and "&lt;!here&gt; data" in text
    assert "…and 18 more." in text and "and 22 more" in text
    assert "1140 grants on high-risk assets queued for recertification" in text


def test_a_name_with_line_breaks_keeps_the_tree_one_line_per_asset():
    root = TreeNode(asset=_asset(0, AssetKind.MODEL))
    root.children = [TreeNode(asset=_asset(1, name="two\nlines", license="a\nb"), depth=1,
                              edges=(EdgeType.TRAINED_ON,))]
    (line,) = tree_lines(LineageTree(root=root, direction=Direction.UP, max_depth=5))
    assert "*two lines*" in line and "license a b" in line
