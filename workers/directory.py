"""Who people are in Slack: users (bots, deactivated) and membership of the policy's groups."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from workflows.policy import Policy

log = logging.getLogger(__name__)
CACHE_SECONDS = 300.0


@dataclass(frozen=True)
class SlackUser:
    """The parts of users.info Steward relies on."""

    id: str
    name: str
    is_bot: bool
    deleted: bool
    tz: str


class Directory:
    """Looks people and user groups up in Slack, caching answers for a few minutes."""

    def __init__(self, client: WebClient, *, ttl: float = CACHE_SECONDS):
        self._client = client
        self._ttl = ttl
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, object]] = {}

    def user(self, user_id: str) -> SlackUser | None:
        """The user, or None when Slack does not know them."""
        def load() -> SlackUser | None:
            try:
                data = self._client.users_info(user=user_id)["user"]
            except SlackApiError as exc:
                if exc.response.get("error") == "user_not_found":
                    return None
                raise
            return SlackUser(id=data["id"], name=data.get("real_name") or data.get("name", ""),
                             is_bot=bool(data.get("is_bot")) and data["id"] != "USLACKBOT",
                             deleted=bool(data.get("deleted")), tz=data.get("tz") or "UTC")
        return self._cached(f"user:{user_id}", load)

    def owner_problem(self, user_id: str) -> str | None:
        """Why this user cannot own an asset (a bot, deactivated, unknown), or None."""
        try:
            person = self.user(user_id)
        except SlackApiError:
            return "Slack could not confirm this person just now. Try again in a moment."
        if person is None:
            return "Slack does not know this user."
        if person.is_bot:
            return "An owner must be a person, not a bot."
        if person.deleted:
            return "This account is deactivated. Choose someone who still works here."
        return None

    def members_of(self, policy: Policy, group: str) -> frozenset[str]:
        """Everyone in a policy group, with Slack user groups expanded to their members."""
        return frozenset(self._expand(tuple(policy.groups.get(group, []))))

    def groups_of(self, user_id: str, policy: Policy) -> frozenset[str]:
        """Names of the policy groups this user belongs to, directly or through a Slack user group."""
        return frozenset(name for name, members in policy.groups.items()
                         if user_id in self._expand(tuple(members)))

    def _expand(self, members: tuple[str, ...]) -> set[str]:
        users: set[str] = set()
        for member in members:
            if member.startswith(("U", "W")):
                users.add(member)
            else:
                users |= self._group_members(member)
        return users

    def _group_members(self, reference: str) -> set[str]:
        def load() -> set[str]:
            group_id = reference if reference.startswith("S") else self._group_id(reference.lstrip("@"))
            if not group_id:
                log.warning("policy names user group %s, which Slack does not know", reference)
                return set()
            return set(self._client.usergroups_users_list(usergroup=group_id).get("users", []))
        try:
            return self._cached(f"group:{reference}", load)
        except SlackApiError as exc:
            log.warning("could not read user group %s: %s", reference, exc.response.get("error"))
            return set()

    def _group_id(self, handle: str) -> str | None:
        groups = self._cached("usergroups", lambda: self._client.usergroups_list().get("usergroups", []))
        return next((g["id"] for g in groups if g.get("handle") == handle), None)

    def _cached(self, key: str, load):
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit and now - hit[0] < self._ttl:
                return hit[1]
        value = load()
        with self._lock:
            self._cache[key] = (now, value)
        return value
