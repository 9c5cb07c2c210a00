"""The policy file: per-tier approvers, grant limits, review intervals, required documents and the
provisioning connectors that carry out grants and revokes."""

from __future__ import annotations

import re
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from workflows.enums import AssetKind, ConnectorType, DocType, RiskTier
from workflows.errors import InvalidInput

OWNER = "owner"
DATA_OWNERS = "data_owners"
_BUILTIN_STEPS = {OWNER, DATA_OWNERS}
_GROUP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # shown in Slack messages, so no markup
_MEMBER = re.compile(r"^(?:[UW][A-Z0-9]{2,}|S[A-Z0-9]{2,}|@[a-z0-9][a-z0-9._-]*)$")
# A tier's `connector: none` turns provisioning off for that tier, whatever `provisioning_connector` says.
NO_CONNECTOR = "none"
_CONNECTOR_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Plain http is allowed only to this machine (tests, a sidecar); anything else must be https.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
MAX_POLICY_BYTES = 1_000_000  # a policy is a few kilobytes; anything near this is not one
# Aliases (*name) are shared, not copied, when YAML is read, but everything that walks the policy sees
# each use: a few nested ones stand for billions of values (the "billion laughs").
MAX_POLICY_NODES = 100_000
MAX_HOURS, MAX_DAYS = 24 * 365, 3650  # bounds on timings, so that every date Steward computes exists


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TierPolicy(_Strict):
    """What a tier demands."""

    access: Literal["allowed", "refused"] = "allowed"
    approvers: list[str] = Field(default_factory=lambda: [OWNER])
    max_grant_days: int = Field(ge=0, le=3650)
    review_interval_days: int = Field(gt=0, le=3650)
    # How often the owner recertifies who has access; None: the tier's default (RECERTIFY_DEFAULT_DAYS).
    recertify_interval_days: int | None = Field(default=None, gt=0, le=3650)
    required_docs: dict[AssetKind, list[DocType]] = Field(default_factory=dict)
    # Overrides `provisioning_connector` for this tier: a connector's name, or "none".
    connector: str | None = None

    @property
    def review_interval(self) -> timedelta:
        """The review interval as a timedelta."""
        return timedelta(days=self.review_interval_days)


# Recertification intervals of tiers whose policy names none: high-risk access is recertified quarterly.
RECERTIFY_DEFAULT_DAYS = {RiskTier.PROHIBITED: 30, RiskTier.HIGH: 90, RiskTier.LIMITED: 180, RiskTier.MINIMAL: 365}


class ApprovalTimings(_Strict):
    """When undecided requests are chased, escalated and given up on."""

    remind_after_hours: list[int] = Field(default_factory=lambda: [4, 24], max_length=10)
    escalate_after_hours: int = Field(default=48, gt=0, le=MAX_HOURS)
    expire_after_days: int = Field(default=7, gt=0, le=365)

    @model_validator(mode="after")
    def _in_order(self) -> ApprovalTimings:
        if sorted(self.remind_after_hours) != self.remind_after_hours or \
                any(not 0 < h <= MAX_HOURS for h in self.remind_after_hours):
            raise ValueError(f"approvals.remind_after_hours: list hours from 1 to {MAX_HOURS} in increasing order")
        if self.escalate_after_hours >= self.expire_after_days * 24:
            raise ValueError("approvals.escalate_after_hours: must come before the request expires")
        return self


class GrantSettings(_Strict):
    """How long grants last and when their holders are warned."""

    duration_choices_days: list[int] = Field(default_factory=lambda: [1, 7, 30, 90, 180, 365], max_length=20)
    warn_before_hours: int = Field(default=24, gt=0, le=MAX_HOURS)

    @field_validator("duration_choices_days")
    @classmethod
    def _days_exist(cls, days: list[int]) -> list[int]:
        if any(not 0 < d <= MAX_DAYS for d in days):
            raise ValueError(f"each grant length is from 1 to {MAX_DAYS} days")
        return days


class EmergencySettings(_Strict):
    """Break-glass access."""

    max_hours: int = Field(default=4, gt=0, le=72)


class Channels(_Strict):
    """Slack channel ids Steward posts to; empty means "nowhere"."""

    security: str = ""
    governance: str = ""
    audit: str = ""


class Connector(_Strict):
    """How grants and revokes are carried out: by the owner's hand (`manual`), or by a signed `webhook`.

    The webhook's secret is never in the policy: `secret_env` names the environment variable that holds
    it, read when an event is sent."""

    type: ConnectorType
    url: str | None = None
    secret_env: str | None = None
    timeout_seconds: float = Field(default=10, gt=0, le=60)


class Policy(_Strict):
    """The whole policy, validated."""

    version: Literal[1] = 1
    groups: dict[str, list[str]] = Field(default_factory=dict)
    admin_group: str | None = None
    governance_group: str | None = None
    fallback_group: str | None = None
    tiers: dict[RiskTier, TierPolicy]
    approvals: ApprovalTimings = Field(default_factory=ApprovalTimings)
    grants: GrantSettings = Field(default_factory=GrantSettings)
    emergency: EmergencySettings = Field(default_factory=EmergencySettings)
    channels: Channels = Field(default_factory=Channels)
    connectors: dict[str, Connector] = Field(default_factory=dict)
    # The connector every tier uses unless it names its own; None: no provisioning, grants are active at once.
    provisioning_connector: str | None = None

    @field_validator("groups")
    @classmethod
    def _members_are_slack_ids(cls, groups: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, members in groups.items():
            if name in _BUILTIN_STEPS:
                raise ValueError(f"'{name}' is reserved and cannot be a group name")
            if not _GROUP_NAME.match(name):
                raise ValueError(f"'{name[:64]}' is not a usable group name (letters, digits, '.', '_' and '-', "
                                 "at most 64)")
            for member in members:
                if not _MEMBER.match(member):
                    raise ValueError(
                        f"group '{name}': '{member}' is not a Slack user id (U…), user group id (S…) "
                        "or user group handle (@name)"
                    )
        return groups

    @model_validator(mode="after")
    def _references_exist(self) -> Policy:
        missing = [t.value for t in RiskTier if t not in self.tiers]
        if missing:
            raise ValueError(f"tiers: missing {', '.join(missing)}")
        named = (("admin_group", self.admin_group), ("governance_group", self.governance_group),
                 ("fallback_group", self.fallback_group))
        for label, group in named:
            if group is not None and group not in self.groups:
                raise ValueError(f"{label}: unknown group '{group}'")
        for tier, tier_policy in self.tiers.items():
            for step in tier_policy.approvers:
                if step not in _BUILTIN_STEPS and step not in self.groups:
                    raise ValueError(f"tiers.{tier.value}.approvers: unknown group '{step}'")
        self._check_connectors()
        return self

    def _check_connectors(self) -> None:
        # Raised with the full key in the message, as the other reference checks are.
        for name, connector in self.connectors.items():
            where = f"connectors.{name}"
            if name == NO_CONNECTOR or not _CONNECTOR_NAME.match(name):
                raise ValueError(f"connectors: '{name}' is not a usable connector name (lowercase letters, "
                                 f"digits, '-' and '_', at most 64; '{NO_CONNECTOR}' is reserved)")
            if connector.type is ConnectorType.MANUAL:
                for key in ("url", "secret_env"):
                    if getattr(connector, key) is not None:
                        raise ValueError(f"{where}.{key}: only a webhook connector has a {key}")
                continue
            if not connector.url:
                raise ValueError(f"{where}.url: a webhook connector needs a url")
            problem = webhook_url_problem(connector.url)
            if problem:
                raise ValueError(f"{where}.url: {problem}")
            if not connector.secret_env:
                raise ValueError(f"{where}.secret_env: a webhook connector needs secret_env, the name of the "
                                 "environment variable that holds its signing secret")
            if not _ENV_NAME.match(connector.secret_env):
                raise ValueError(f"{where}.secret_env: '{connector.secret_env}' is not an environment variable "
                                 "name (put the secret itself in the environment, not in the policy)")
        named = [("provisioning_connector", self.provisioning_connector)]
        named += [(f"tiers.{tier.value}.connector", rules.connector) for tier, rules in self.tiers.items()]
        for label, name in named:
            if name is None or (name == NO_CONNECTOR and label != "provisioning_connector"):
                continue
            if name not in self.connectors:
                known = ", ".join(sorted(self.connectors)) or "none are defined"
                raise ValueError(f"{label}: unknown connector '{name}' (connectors: {known})")

    def tier(self, tier: RiskTier | None) -> TierPolicy:
        """The rules for `tier`; an unclassified asset gets the strictest review cadence."""
        if tier is None:
            return self.unclassified
        return self.tiers[tier]

    @property
    def unclassified(self) -> TierPolicy:
        """Rules for assets no classified system reaches: the shortest review interval of the tiers that
        may be in use (a prohibited system must be switched off, so its cadence is no yardstick)."""
        in_use = [p for t, p in self.tiers.items() if t != RiskTier.PROHIBITED]
        shortest = min(in_use, key=lambda p: p.review_interval_days)
        base = self.tiers[RiskTier.MINIMAL]
        return base.model_copy(update={"review_interval_days": shortest.review_interval_days})

    def recertify_interval(self, tier: RiskTier | None) -> timedelta:
        """How often the owner of an asset at `tier` recertifies its grants; unclassified: the shortest of
        the tiers that may be in use, as for reviews."""
        if tier is None:
            return min(self.recertify_interval(t) for t in self.tiers if t != RiskTier.PROHIBITED)
        days = self.tiers[tier].recertify_interval_days
        return timedelta(days=days if days is not None else RECERTIFY_DEFAULT_DAYS.get(tier, 365))

    def required_docs(self, tier: RiskTier | None, kind: AssetKind) -> list[DocType]:
        """Documentation types the policy requires for an asset of `kind` at `tier`."""
        return list(self.tier(tier).required_docs.get(kind, []))

    def duration_choices(self, tier: RiskTier | None) -> list[int]:
        """Grant lengths in days that a request may choose at this tier (none when access is refused)."""
        rules = self.tier(tier)
        if rules.access == "refused":
            return []
        return [d for d in self.grants.duration_choices_days if d <= rules.max_grant_days]

    def connector_for(self, tier: RiskTier | None) -> tuple[str, Connector] | None:
        """The connector (name and settings) that provisions grants at `tier`, or None: active at once."""
        name = self.tier(tier).connector or self.provisioning_connector
        if name is None or name == NO_CONNECTOR:
            return None
        return name, self.connectors[name]

    def admins(self) -> list[str]:
        """Members of the admin group (user ids and user-group references)."""
        return list(self.groups.get(self.admin_group, [])) if self.admin_group else []


def webhook_url_problem(url: str) -> str | None:
    """Why `url` cannot receive signed events, or None: https, or http to this machine only, no credentials."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return f"'{url}' is not a valid URL"
    if parts.scheme not in ("https", "http") or not host:
        return f"'{url}' is not an https URL"
    if parts.username or parts.password:
        return "keep credentials out of the URL; the signing secret goes in secret_env"
    if parts.scheme == "http" and host not in LOOPBACK_HOSTS:
        return (f"'{url}' must use https (plain http is allowed only to "
                f"{', '.join(sorted(LOOPBACK_HOSTS))})")
    return None


def default_policy_text() -> str:
    """The documented default policy shipped with Steward."""
    return resources.files("workflows").joinpath("default_policy.yaml").read_text(encoding="utf-8")


def parse_policy(text: str, *, source: str = "policy") -> Policy:
    """Parse and validate policy YAML; raise InvalidInput naming the first bad key."""
    if len(text) > MAX_POLICY_BYTES:
        raise InvalidInput(f"{source}: {len(text)} characters is too long for a policy "
                           f"(at most {MAX_POLICY_BYTES})")
    try:
        data = yaml.safe_load(text)  # plain data only: a tag that would build an object is an error
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{source}: not valid YAML: {_yaml_problem(exc)}") from exc
    except RecursionError as exc:
        raise InvalidInput(f"{source}: not valid YAML: nested too deeply") from exc
    except ValueError as exc:  # a number with more digits than Python converts (sys.get_int_max_str_digits)
        raise InvalidInput(f"{source}: not valid YAML: a number is too large") from exc
    if not isinstance(data, dict):
        raise InvalidInput(f"{source}: expected a mapping at the top level")
    if _expands_past(data, MAX_POLICY_NODES):
        raise InvalidInput(f"{source}: its aliases (*name) expand to more than {MAX_POLICY_NODES} values; "
                           "a policy is far smaller")
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(f"{source}: {_describe(exc)}") from exc


def load_policy(path: Path | None) -> Policy:
    """Load the policy from `path`, or the default policy when no path is set."""
    if path is None:
        return parse_policy(default_policy_text(), source="default policy")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read the policy file ({exc.strerror})") from exc
    return parse_policy(text, source=str(path))


def _expands_past(data: object, limit: int) -> bool:
    """Whether walking `data`, aliases expanded, visits more than `limit` values (it stops there)."""
    pending, seen = [data], 0
    while pending:
        node = pending.pop()
        seen += 1
        if seen > limit:
            return True
        if isinstance(node, dict):
            pending.extend(node.keys())
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return False


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What is wrong, in YAML's words, and where; a tag that would build an object is named as such."""
    problem = str(getattr(exc, "problem", "") or exc.__class__.__name__)
    tag = re.search(r"tag '([^']+)'", problem)
    if isinstance(exc, yaml.constructor.ConstructorError) and tag:
        problem = f"the tag {tag.group(1).replace('tag:yaml.org,2002:', '!!')} is not allowed (a policy is plain data)"
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} (line {mark.line + 1})" if mark is not None else problem


def _describe(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown key '{where}'"
    # Only a bad key directly under `tiers` is a tier name; a bad doc type or kind deeper down is not.
    if error["type"] == "enum" and error["loc"] == ("tiers", error["input"], "[key]"):
        return f"unknown tier '{error['input']}' (expected one of: {', '.join(t.value for t in RiskTier)})"
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message
