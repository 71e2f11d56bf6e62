"""Key administration's exceptions: the registry writer's (`AdminError`), and the admin API's tree,
where each class carries its HTTP status and error code, so the mapping to an answer is one
handler (`services/admin/api.py`)."""

from __future__ import annotations


class AdminError(Exception):
    """A key-administration change cannot be carried out; `message` says why (never a secret)."""

    retriable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RegistryUnavailable(AdminError):
    """The registry topic could not be read or written (Kafka unreachable)."""

    retriable = True


class AdminApiError(Exception):
    """Base of every admin API error; `message` is safe to show the caller."""

    status_code = 500
    code = "internal_error"
    retriable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(AdminApiError):
    """The request is malformed or asks for something impossible."""

    status_code = 400
    code = "invalid_request"


class Unauthenticated(AdminApiError):
    """No admin credential, or one that is unknown, revoked or expired."""

    status_code = 401
    code = "unauthenticated"


class Forbidden(AdminApiError):
    """The credential's role does not allow the action (the refusal is audited)."""

    status_code = 403
    code = "forbidden"


class NotFound(AdminApiError):
    """No such key, provider key, credential or team."""

    status_code = 404
    code = "not_found"


class Conflict(AdminApiError):
    """The action conflicts with the current state (e.g. an owner already exists)."""

    status_code = 409
    code = "conflict"


class Unavailable(AdminApiError):
    """Kafka or ClickHouse cannot be reached right now (retriable)."""

    status_code = 503
    code = "unavailable"
    retriable = True


__all__ = [
    "AdminApiError",
    "AdminError",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "NotFound",
    "RegistryUnavailable",
    "Unauthenticated",
    "Unavailable",
]
