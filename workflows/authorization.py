"""Who may do what: the authorization matrix, every action against every role, in one readable table.

The checks themselves run where each action is carried out (workflows.inventory, access, reviews,
recertification, orphans, report), again on every click. This table is what those checks must add up
to. tests/security/test_authorization_matrix.py sends every cell as signed Slack requests and fails
when the product disagrees, and the README's Security section is this table as `markdown_table()`
renders it (`python -m workflows.authorization` prints it).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """How the person acting relates to the record they act on."""

    REQUESTER = "requester"
    OWNER = "owner"
    APPROVER = "approver of this step"
    OTHER_APPROVER = "approver of another step"
    ADMIN = "admin"
    GOVERNANCE = "governance"
    UNRELATED = "unrelated user"
    DEACTIVATED = "deactivated user"


class Verb(StrEnum):
    """Every action a person can take on Steward's records."""

    EDIT = "edit"
    RETIRE = "retire"
    CLASSIFY = "classify"
    REQUEST = "request"
    APPROVE = "approve"
    DENY = "deny"
    REVOKE = "revoke"
    EXTEND = "extend"
    CANCEL = "cancel"
    REVIEW = "review"
    SNOOZE = "snooze"
    RECERTIFY = "recertify"
    TAKE_OWNERSHIP = "take ownership"
    REPORT = "report"
    EXPORT = "export"


@dataclass(frozen=True)
class Rule:
    """One row: the roles that may take the action, and what to know about it."""

    verb: Verb
    allowed: frozenset[Role]
    note: str


# A deactivated account is refused everything, even where the policy still names it (the matrix's
# deactivated user is listed as an admin, so only their deactivation stops them).
_ACTIVE = frozenset(Role) - {Role.DEACTIVATED}
_KEEPERS = frozenset({Role.OWNER, Role.ADMIN})

MATRIX: tuple[Rule, ...] = (
    Rule(Verb.EDIT, _KEEPERS, "The asset's owner or an admin; the form and its submission are both checked."),
    Rule(Verb.RETIRE, _KEEPERS, "As edit, from the card or a review; retiring ends every grant on the asset."),
    Rule(Verb.CLASSIFY, _KEEPERS | {Role.GOVERNANCE}, "An AI system's owner, an admin or governance."),
    Rule(Verb.REQUEST, _ACTIVE, "Anyone may ask; the approvers the asset's tier names decide."),
    Rule(Verb.APPROVE, frozenset({Role.APPROVER}),
         "Only an approver of an open step, for that step; never the requester, and one person satisfies at "
         "most one step. Owners, admins and governance approve only where the policy names them."),
    Rule(Verb.DENY, frozenset({Role.APPROVER}),
         "An approver who has not decided yet, with a reason; never the requester."),
    Rule(Verb.REVOKE, _KEEPERS, "The asset's owner or an admin, with a reason; a grantee releases instead."),
    Rule(Verb.EXTEND, frozenset({Role.REQUESTER}), "Only the grantee; the extension is approved like a request."),
    Rule(Verb.CANCEL, frozenset({Role.REQUESTER}), "Only the requester, while the request is pending."),
    Rule(Verb.REVIEW, _KEEPERS, "Still accurate or Update on a review: the asset's owner or an admin."),
    Rule(Verb.SNOOZE, _KEEPERS, "As review, at most twice per review period."),
    Rule(Verb.RECERTIFY, _KEEPERS, "Keep, Revoke or Keep all on a recertification: the owner or an admin."),
    Rule(Verb.TAKE_OWNERSHIP, _ACTIVE,
         "Any active person may adopt an orphaned asset (first click wins); never a bot."),
    Rule(Verb.REPORT, frozenset({Role.ADMIN, Role.GOVERNANCE}),
         "`/steward report` and its Send me the HTML button: the admin and governance groups."),
    Rule(Verb.EXPORT, frozenset(),
         "Not in Slack at all: `steward export` is a command-line tool for whoever can read the database."),
)
_RULES = {rule.verb: rule for rule in MATRIX}


def is_allowed(verb: Verb, role: Role) -> bool:
    """Whether a person in `role` may take `verb`, as the matrix says."""
    return role in _RULES[verb].allowed


def markdown_table() -> str:
    """The matrix as a Markdown table: a row per action, a column per role, and the notes."""
    head = ["Action", *(role.value for role in Role), "Notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    for rule in MATRIX:
        cells = ["yes" if role in rule.allowed else "no" for role in Role]
        lines.append("| " + " | ".join([f"**{rule.verb.value}**", *cells, rule.note]) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
