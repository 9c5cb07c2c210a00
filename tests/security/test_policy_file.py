"""A hostile policy file is refused at load, with one clear message naming what is wrong.

YAML tags that would build Python objects, aliases that stand for billions of values, nesting deep enough
to exhaust the parser, numbers too big to use, unknown tiers and keys, and group names that would be
markup in Slack: `load_policy` raises InvalidInput (the CLI's one-line error; the bot refuses to start)
and never runs, builds or hangs on anything in the file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from workflows.errors import InvalidInput
from workflows.policy import MAX_POLICY_BYTES, default_policy_text, load_policy

BASE = default_policy_text()


def _billion_laughs() -> str:
    lines = ["lol0: &l0 [U0LOL01, U0LOL01, U0LOL01, U0LOL01, U0LOL01, U0LOL01, U0LOL01, U0LOL01, U0LOL01]"]
    lines += [f"lol{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, 10)]
    return "\n".join(lines) + "\n" + BASE.replace("admins: []", "admins: *l9")


def _edit(change) -> str:
    data = yaml.safe_load(BASE)
    change(data)
    return yaml.safe_dump(data)


HOSTILE: dict[str, tuple[str, str]] = {
    # name: (file contents, what the message must say)
    "python object tag": ("!!python/object/apply:os.system ['touch /tmp/steward-pwned']\n",
                          "the tag !!python/object/apply:os.system is not allowed"),
    "python tag in a value": (BASE.replace("admins: []", "admins: !!python/name:os.system ''"),
                              "the tag !!python/name:os.system is not allowed"),
    "billion laughs": (_billion_laughs(), "its aliases (*name) expand to more than 100000 values"),
    "nested too deeply": ("groups: " + "[" * 50_000 + "]" * 50_000 + "\n", "nested too deeply"),
    "a number with 5,000 digits": (BASE.replace("escalate_after_hours: 48", "escalate_after_hours: " + "9" * 5000),
                                   "a number is too large"),
    "an hour count no date can hold": (BASE.replace("escalate_after_hours: 48", "escalate_after_hours: 10e30"),
                                       "approvals.escalate_after_hours"),
    "expiry after 10**30 days": (BASE.replace("expire_after_days: 7", "expire_after_days: " + "9" * 31),
                                 "approvals.expire_after_days: Input should be less than or equal to 365"),
    "a grant length of a billion days": (BASE.replace("[1, 7, 30, 90, 180, 365]", "[1, 1000000000]"),
                                         "each grant length is from 1 to 3650 days"),
    "infinite grant days": (BASE.replace("max_grant_days: 90", "max_grant_days: .inf", 1),
                            "tiers.minimal.max_grant_days"),
    "a huge file": (BASE + "#" + "x" * MAX_POLICY_BYTES + "\n", "too long for a policy"),
    "unknown tier": (_edit(lambda d: d["tiers"].update(extreme=dict(d["tiers"]["minimal"]))), "unknown tier 'extreme'"),
    "unknown top-level key": (_edit(lambda d: d.update(run_as_root=True)), "unknown key 'run_as_root'"),
    "unknown tier key": (_edit(lambda d: d["tiers"]["high"].update(approve_all=True)),
                         "unknown key 'tiers.high.approve_all'"),
    "a group name that is markup": (_edit(lambda d: d["groups"].update({"<!channel>": []})),
                                    "'<!channel>' is not a usable group name"),
    "a member that is not a Slack id": (_edit(lambda d: d["groups"].update(admins=["<@U0EVIL1>"])),
                                        "is not a Slack user id"),
    "not a mapping": ("- just\n- a list\n", "expected a mapping at the top level"),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_policy_file_is_refused_at_load_with_a_clear_message(tmp_path: Path, figures, name):
    text, message = HOSTILE[name]
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidInput) as refused:
        load_policy(path)
    assert message in str(refused.value)
    assert str(refused.value).startswith(f"{path}: ") and "\n" not in str(refused.value)
    assert not Path("/tmp/steward-pwned").exists()
    figures["files_refused"] += 1


def test_the_default_policy_still_loads_and_a_modest_alias_is_fine(tmp_path: Path):
    assert load_policy(None).tiers
    path = tmp_path / "policy.yaml"
    path.write_text(BASE.replace("admins: []", "admins: &ops [U0ADMIN1]").replace("security: []", "security: *ops"),
                    encoding="utf-8")
    assert load_policy(path).groups["security"] == ["U0ADMIN1"]
