"""Domain errors that services raise and the edges turn into Slack or CLI messages."""

from __future__ import annotations


class DomainError(Exception):
    """Base class for errors a user can act on; the message is safe to show."""


class NotFound(DomainError):
    """A record does not exist. `suggestions` lists close matches, best first."""

    def __init__(self, message: str, *, suggestions: list[str] | None = None):
        super().__init__(message)
        self.suggestions = suggestions or []


class NotAllowed(DomainError):
    """The actor may not do this."""


class InvalidInput(DomainError):
    """Input failed validation. `field_errors` maps a form field to its message."""

    def __init__(self, message: str, *, field_errors: dict[str, str] | None = None):
        super().__init__(message)
        self.field_errors = field_errors or {}


class Conflict(DomainError):
    """The change clashes with the current state (a duplicate, a cycle, a lost race)."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field
