"""The policy file: the default loads, and every mistake is refused with a message naming it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from workflows.enums import AssetKind, ConnectorType, DocType, RiskTier
from workflows.errors import InvalidInput
from workflows.policy import Policy, default_policy_text, load_policy, parse_policy


def _default() -> dict[str, Any]:
    return yaml.safe_load(default_policy_text())


def _parse(data: dict[str, Any]) -> Policy:
    return parse_policy(yaml.safe_dump(data))


def test_the_default_policy_loads():
    policy = load_policy(None)
    assert set(policy.tiers) == set(RiskTier)
    assert policy.admin_group == "admins"
    assert policy.fallback_group == "governance"
    assert policy.tier(RiskTier.PROHIBITED).access == "refused"
    assert policy.tier(RiskTier.HIGH).approvers == ["owner", "security", "data_owners"]


@pytest.mark.parametrize(
    ("tier", "days"),
    [(RiskTier.MINIMAL, 365), (RiskTier.LIMITED, 180), (RiskTier.HIGH, 90), (RiskTier.PROHIBITED, 30)],
)
def test_review_intervals(policy, tier, days):
    assert policy.tier(tier).review_interval_days == days
    assert policy.tier(tier).review_interval == timedelta(days=days)


def test_unclassified_gets_the_shortest_interval_of_the_tiers_in_use(policy):
    in_use = [p.review_interval_days for t, p in policy.tiers.items() if t != RiskTier.PROHIBITED]
    assert policy.tier(None).review_interval_days == min(in_use) == 90
    assert policy.tier(None).review_interval == timedelta(days=90)
    # Everything else about an unclassified asset is the minimal tier's.
    assert policy.tier(None).required_docs == policy.tier(RiskTier.MINIMAL).required_docs
    assert policy.tier(RiskTier.MINIMAL).review_interval_days == 365, "the minimal tier itself is unchanged"


def test_unclassified_follows_the_policy_not_a_constant():
    data = _default()
    data["tiers"]["prohibited"]["review_interval_days"] = 400
    data["tiers"]["high"]["review_interval_days"] = 45
    assert _parse(data).tier(None).review_interval_days == 45


@pytest.mark.parametrize(
    ("tier", "kind", "docs"),
    [
        (RiskTier.MINIMAL, AssetKind.MODEL, [DocType.MODEL_CARD]),
        (RiskTier.HIGH, AssetKind.MODEL, [DocType.MODEL_CARD, DocType.TECHNICAL_DOCUMENTATION]),
        (RiskTier.LIMITED, AssetKind.SYSTEM, [DocType.INSTRUCTIONS_FOR_USE]),
        (RiskTier.MINIMAL, AssetKind.SYSTEM, []),
        (RiskTier.HIGH, AssetKind.INFRASTRUCTURE, []),
        (None, AssetKind.DATASET, [DocType.DATASHEET]),
    ],
)
def test_required_docs(policy, tier, kind, docs):
    assert policy.required_docs(tier, kind) == docs


def test_admins_are_the_admin_group_members():
    data = _default()
    data["groups"]["admins"] = ["U0ADMIN1", "@ai-governance"]
    assert _parse(data).admins() == ["U0ADMIN1", "@ai-governance"]
    data["admin_group"] = None
    assert _parse(data).admins() == []


@pytest.mark.parametrize(
    "members", [["U0ADMIN1"], ["W0123ABC"], ["S0GROUP1"], ["@ai-governance"], ["@team.ml_ops"], []]
)
def test_good_group_members_are_accepted(members):
    data = _default()
    data["groups"]["security"] = members
    assert _parse(data).groups["security"] == members


def _without(path: list[str]):
    def mutate(data):
        node = data
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]
    return mutate


def _set(path: list[str], value: Any):
    def mutate(data):
        node = data
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
    return mutate


# (id, mutation of the default policy, texts the message must contain)
BAD = [
    ("unknown top-level key", _set(["reviewers"], ["U0ADMIN1"]), ["unknown key", "'reviewers'"]),
    ("unknown tier-level key", _set(["tiers", "high", "reviewer"], "x"), ["unknown key", "'tiers.high.reviewer'"]),
    ("unknown tier name", _set(["tiers", "severe"], {"max_grant_days": 1, "review_interval_days": 1}),
     ["unknown tier 'severe'", "minimal, limited, high, prohibited"]),
    ("missing tier", _without(["tiers", "limited"]), ["tiers", "missing limited"]),
    ("no tiers at all", _without(["tiers"]), ["tiers", "required"]),
    ("approver naming an unknown group", _set(["tiers", "high", "approvers"], ["owner", "legal"]),
     ["tiers.high.approvers", "unknown group 'legal'"]),
    ("bad group member format", _set(["groups", "security"], ["bob"]), ["group 'security'", "'bob'"]),
    ("lowercase user id", _set(["groups", "security"], ["u0admin1"]), ["group 'security'", "'u0admin1'"]),
    ("reserved group name", _set(["groups", "owner"], []), ["'owner' is reserved"]),
    ("admin group unknown", _set(["admin_group"], "wizards"), ["admin_group", "unknown group 'wizards'"]),
    ("fallback group unknown", _set(["fallback_group"], "ghosts"), ["fallback_group", "unknown group 'ghosts'"]),
    ("zero review interval", _set(["tiers", "minimal", "review_interval_days"], 0),
     ["tiers.minimal.review_interval_days"]),
    ("missing grant limit", _without(["tiers", "limited", "max_grant_days"]), ["tiers.limited.max_grant_days"]),
    ("bad access value", _set(["tiers", "high", "access"], "maybe"), ["tiers.high.access"]),
    ("unknown doc type", _set(["tiers", "high", "required_docs"], {"model": ["poem"]}),
     ["tiers.high.required_docs.model", "model_card"]),
    ("unknown kind in required docs", _set(["tiers", "high", "required_docs"], {"robot": ["model_card"]}),
     ["tiers.high.required_docs.robot"]),
    ("unsupported version", _set(["version"], 2), ["version"]),
]


@pytest.mark.parametrize(("mutate", "expected"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_bad_policy_is_refused_with_a_message_naming_the_problem(mutate, expected):
    data = _default()
    mutate(data)
    with pytest.raises(InvalidInput) as excinfo:
        _parse(data)
    message = str(excinfo.value)
    for text in expected:
        assert text in message, message


def test_a_bad_doc_type_is_not_reported_as_an_unknown_tier():
    data = _default()
    data["tiers"]["high"]["required_docs"] = {"model": ["poem"]}
    with pytest.raises(InvalidInput) as excinfo:
        _parse(data)
    assert "unknown tier" not in str(excinfo.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tiers: [unclosed", "not valid YAML"),
        ("version: 1\n  tiers: {", "not valid YAML"),
        ("- minimal\n- high\n", "expected a mapping"),
        ("just words", "expected a mapping"),
        ("", "expected a mapping"),
    ],
)
def test_text_that_is_not_a_policy_mapping_is_refused(text, expected):
    with pytest.raises(InvalidInput) as excinfo:
        parse_policy(text, source="my-policy.yaml")
    assert str(excinfo.value).startswith("my-policy.yaml: ")
    assert expected in str(excinfo.value)


def test_a_policy_file_loads_and_errors_name_the_file(tmp_path):
    good = tmp_path / "policy.yaml"
    data = _default()
    data["groups"]["admins"] = ["U0ADMIN1"]
    good.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert load_policy(good).admins() == ["U0ADMIN1"]

    bad = tmp_path / "bad.yaml"
    data["surprise"] = True
    bad.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(InvalidInput) as excinfo:
        load_policy(bad)
    assert str(bad) in str(excinfo.value) and "'surprise'" in str(excinfo.value)


@pytest.mark.parametrize("name", ["missing.yaml", "."])
def test_an_unreadable_policy_file_is_refused(tmp_path, name):
    path = tmp_path / name
    with pytest.raises(InvalidInput) as excinfo:
        load_policy(path)
    assert str(path) in str(excinfo.value)
    assert "cannot read the policy file" in str(excinfo.value)


def test_the_policy_is_frozen(policy):
    with pytest.raises(ValidationError):
        policy.admin_group = "someone-else"  # type: ignore[misc]
    assert policy.admin_group == "admins"


# ---- provisioning connectors ---------------------------------------------------------------------

IAM = {"type": "webhook", "url": "https://iam.example.com/steward", "secret_env": "STEWARD_IAM_SECRET"}


def _with_connectors(connectors: dict[str, Any], *, default: str | None = None,
                     tiers: dict[str, str] | None = None) -> dict[str, Any]:
    data = _default()
    data["connectors"] = connectors
    data["provisioning_connector"] = default
    for tier, name in (tiers or {}).items():
        data["tiers"][tier]["connector"] = name
    return data


def test_by_default_no_connector_provisions_anything(policy):
    assert policy.connectors == {} and policy.provisioning_connector is None
    assert all(policy.connector_for(tier) is None for tier in [*RiskTier, None])


def test_connectors_load_and_each_tier_finds_its_own():
    policy = _parse(_with_connectors({"iam": IAM, "by-hand": {"type": "manual"}}, default="by-hand",
                                     tiers={"high": "iam", "limited": "none"}))
    name, iam = policy.connector_for(RiskTier.HIGH)
    assert (name, iam.type, iam.url, iam.secret_env, iam.timeout_seconds) == (
        "iam", ConnectorType.WEBHOOK, IAM["url"], "STEWARD_IAM_SECRET", 10)
    assert policy.connector_for(RiskTier.MINIMAL)[0] == "by-hand"
    assert policy.connector_for(None)[0] == "by-hand"  # unclassified follows minimal
    assert policy.connector_for(RiskTier.LIMITED) is None  # `none` opts a tier out


@pytest.mark.parametrize("url", ["https://iam.example.com/hook?x=1", "http://127.0.0.1:8080/hook",
                                 "http://localhost/hook", "http://[::1]:9000/hook", "https://10.0.0.5:8443/"])
def test_webhook_urls_that_are_accepted(url):
    policy = _parse(_with_connectors({"iam": {**IAM, "url": url}}, default="iam"))
    assert policy.connectors["iam"].url == url


# (id, connectors, default connector, tier overrides, texts the message must contain)
BAD_CONNECTORS = [
    ("unknown default connector", {"iam": IAM}, "ldap", {}, ["provisioning_connector", "unknown connector 'ldap'"]),
    ("unknown connector with none defined", {}, "iam", {}, ["provisioning_connector", "'iam'", "none are defined"]),
    ("unknown tier connector", {"iam": IAM}, None, {"high": "okta"}, ["tiers.high.connector", "unknown connector 'okta'"]),
    ("http to another host", {"iam": {**IAM, "url": "http://iam.example.com/hook"}}, "iam", {},
     ["connectors.iam.url", "must use https", "127.0.0.1"]),
    ("http to a private address", {"iam": {**IAM, "url": "http://10.0.0.5/hook"}}, "iam", {},
     ["connectors.iam.url", "must use https"]),
    ("not a URL", {"iam": {**IAM, "url": "iam.example.com/hook"}}, "iam", {}, ["connectors.iam.url", "not an https URL"]),
    ("another scheme", {"iam": {**IAM, "url": "ftp://iam.example.com/"}}, "iam", {}, ["connectors.iam.url"]),
    ("credentials in the URL", {"iam": {**IAM, "url": "https://bot:hunter2@iam.example.com/"}}, "iam", {},
     ["connectors.iam.url", "credentials"]),
    ("webhook without url", {"iam": {"type": "webhook", "secret_env": "S"}}, "iam", {},
     ["connectors.iam.url", "needs a url"]),
    ("webhook without secret_env", {"iam": {"type": "webhook", "url": IAM["url"]}}, "iam", {},
     ["connectors.iam.secret_env", "needs secret_env"]),
    ("secret_env that is not a variable name", {"iam": {**IAM, "secret_env": "s3cr3t value!"}}, "iam", {},
     ["connectors.iam.secret_env", "not an environment variable name"]),
    ("manual with a url", {"desk": {"type": "manual", "url": IAM["url"]}}, "desk", {},
     ["connectors.desk.url", "only a webhook"]),
    ("unknown type", {"iam": {**IAM, "type": "ldap"}}, "iam", {}, ["connectors.iam.type"]),
    ("unknown connector key", {"iam": {**IAM, "secret": "hunter2"}}, "iam", {},
     ["unknown key", "'connectors.iam.secret'"]),
    ("reserved name", {"none": {"type": "manual"}}, None, {}, ["connectors", "'none'", "reserved"]),
    ("bad name", {"My IAM": {"type": "manual"}}, None, {}, ["connectors", "'My IAM'"]),
    ("timeout too long", {"iam": {**IAM, "timeout_seconds": 600}}, "iam", {}, ["connectors.iam.timeout_seconds"]),
    ("top-level none", {"iam": IAM}, "none", {}, ["provisioning_connector", "unknown connector 'none'"]),
]


@pytest.mark.parametrize(("connectors", "default", "tiers", "expected"), [b[1:] for b in BAD_CONNECTORS],
                         ids=[b[0] for b in BAD_CONNECTORS])
def test_a_bad_connector_is_refused_with_a_message_naming_the_key(connectors, default, tiers, expected):
    with pytest.raises(InvalidInput) as excinfo:
        _parse(_with_connectors(connectors, default=default, tiers=tiers))
    message = str(excinfo.value)
    for text in expected:
        assert text in message, message


def test_the_secret_itself_is_never_in_the_policy(monkeypatch):
    monkeypatch.setenv("STEWARD_IAM_SECRET", "hunter2")
    policy = _parse(_with_connectors({"iam": IAM}, default="iam"))
    assert "hunter2" not in policy.model_dump_json()
