"""Error answers in each provider's own JSON dialect, so SDK clients raise their usual errors."""

from __future__ import annotations

from typing import Any

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_GOOGLE_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_body(
    provider: str, status: int, message: str, type_: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """An error answer in the provider's own JSON shape, so SDK clients raise their usual errors.

    `type_` overrides the provider's error type (OpenAI `type`, Anthropic `error.type`, Google
    `status`); `code` is OpenAI's machine-readable `code` (ignored by the other shapes).
    """
    provider = str(provider)
    if provider == "openai":
        default = _OPENAI_TYPES.get(
            status, "server_error" if status >= 500 else "invalid_request_error"
        )
        return {
            "error": {"message": message, "type": type_ or default, "param": None, "code": code}
        }
    if provider == "anthropic":
        default = _ANTHROPIC_TYPES.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        )
        return {"type": "error", "error": {"type": type_ or default, "message": message}}
    if provider == "google":
        default = _GOOGLE_STATUSES.get(
            status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION"
        )
        return {"error": {"code": status, "message": message, "status": type_ or default}}
    raise ValueError(f"unknown provider {provider!r}; expected openai, anthropic or google")
