"""One exception hierarchy; the service layer maps each class to one gRPC status."""

from __future__ import annotations


class SessionGateError(Exception):
    """Base of every error sessiongate raises on purpose."""


class InvalidArgument(SessionGateError):
    """Bad input. `field` names the offending request field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class NotFound(SessionGateError):
    """The named thing does not exist."""


class AlreadyExists(SessionGateError):
    """An id already used for something else: an event id reused with different content."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class OutOfRange(InvalidArgument):
    """A well-formed value outside what is kept or allowed: a period older than the retained
    ones, a quantity that would take a stored total past what it can hold. `field` names the
    request field."""


class ResourceExhausted(SessionGateError):
    """A bound on what the server holds at once is reached; the caller may retry later."""


class FailedPrecondition(SessionGateError):
    """The request is well-formed but the current state forbids it."""


class Conflict(SessionGateError):
    """A concurrent writer changed the record; the caller may retry."""


class BackendUnavailable(SessionGateError):
    """Redis (or another backend) cannot be reached."""


class Unauthenticated(SessionGateError):
    """No credentials, or credentials that match nothing."""


class PermissionDenied(SessionGateError):
    """Valid credentials of a role that may not call this method."""
