"""Domain exceptions raised by services; the web layer maps them to HTTP status codes."""


class DomainError(Exception):
    """Base class: the message is shown to the user as is, so it must say what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    """The thing does not exist, or the caller may not know that it exists (404)."""


class Forbidden(DomainError):
    """The caller sees the thing but lacks the right for this action (403)."""


class Invalid(DomainError):
    """The request breaks a rule; the message names the rule (422)."""


class Conflict(DomainError):
    """The request clashes with the current state, e.g. an element being deleted (409)."""


class Unauthenticated(DomainError):
    """No valid session or token (401)."""


class TooLarge(DomainError):
    """The upload is larger than the limit or than the space left in the storage (413)."""


class Unavailable(DomainError):
    """A service the request needs (e.g. the company directory) does not answer (503)."""
