"""The gateway's exception tree. Each class carries its HTTP status, whether a retry may succeed,
and (for refusals) the `RejectionReason` its request event records, so the mapping to an answer
in the client's dialect is one handler. No message ever contains a secret.
"""

from __future__ import annotations

from schemas.events.request import RejectionReason


class GatewayError(Exception):
    """Base of every error the gateway raises."""

    status_code = 500
    retriable = False
    reason: RejectionReason | None = None
    error_type: str | None = None  # overrides the provider dialect's default error type
    code: str | None = None  # OpenAI-style machine-readable code

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def headers(self) -> dict[str, str]:
        return {}


# --- refusals before forwarding (outcome "rejected") -------------------------------------------


class RequestRefused(GatewayError):
    """The gateway refused the request; it was never forwarded."""

    status_code = 400


class AuthError(RequestRefused):
    """No wrapped key, or one the registry does not know."""

    status_code = 401
    reason = RejectionReason.AUTH_FAILED
    code = "invalid_api_key"
    # The key id of a known key refused (revoked, expired), so its request event names it.
    key_id: str | None = None


class KeyRevoked(AuthError):
    """The wrapped key was revoked."""

    reason = RejectionReason.KEY_REVOKED
    code = "key_revoked"


class KeyExpired(AuthError):
    """The wrapped key's secret expired, or a rotated-out secret's grace period is over."""

    reason = RejectionReason.KEY_EXPIRED
    code = "key_expired"


class InvalidRequest(RequestRefused):
    """The request body is not valid for its endpoint."""

    status_code = 400
    reason = RejectionReason.INVALID_REQUEST


class BodyTooLarge(InvalidRequest):
    """The request body is larger than KEYWARDEN_GATEWAY_MAX_BODY_BYTES."""

    status_code = 413


class BodyTimeout(InvalidRequest):
    """The client did not send its whole body within KEYWARDEN_GATEWAY_BODY_TIMEOUT_S."""

    status_code = 408


class PolicyViolation(RequestRefused):
    """The key's policy forbids this request."""

    status_code = 403


class ModelNotAllowed(PolicyViolation):
    """The model is not on the key's allowlist."""

    reason = RejectionReason.MODEL_NOT_ALLOWED
    code = "model_not_allowed"


class SourceIpDenied(PolicyViolation):
    """The client address is outside the key's CIDR allowlist."""

    reason = RejectionReason.SOURCE_IP_DENIED
    code = "source_ip_denied"


class RateLimited(PolicyViolation):
    """The key's requests-per-minute limit is reached."""

    status_code = 429
    retriable = True
    reason = RejectionReason.RATE_LIMITED
    error_type = None
    code = "rate_limit_exceeded"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, retry_after_s)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class BudgetExceeded(PolicyViolation):
    """A daily or monthly budget cap is reached (hard stop until the period resets)."""

    status_code = 429
    reason = RejectionReason.BUDGET_EXCEEDED
    error_type = "insufficient_quota"
    code = "budget_exceeded"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, retry_after_s)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class SpendDataStale(RequestRefused):
    """Spend data is stale and the gateway is set to fail closed."""

    status_code = 503
    retriable = True
    reason = RejectionReason.SPEND_DATA_STALE
    code = "spend_data_stale"


class NoProviderKey(RequestRefused):
    """No usable provider key is registered for the provider."""

    status_code = 503
    retriable = True
    reason = RejectionReason.NO_PROVIDER_KEY
    code = "no_provider_key"


# --- failures after forwarding (outcome "upstream_error") --------------------------------------


class UpstreamError(GatewayError):
    """The provider could not be reached or failed."""

    status_code = 502
    retriable = True


class UpstreamTimeout(UpstreamError):
    """The provider did not answer in time."""

    status_code = 504


__all__ = [
    "AuthError",
    "BudgetExceeded",
    "GatewayError",
    "InvalidRequest",
    "KeyExpired",
    "KeyRevoked",
    "ModelNotAllowed",
    "NoProviderKey",
    "PolicyViolation",
    "RateLimited",
    "RequestRefused",
    "SourceIpDenied",
    "SpendDataStale",
    "UpstreamError",
    "UpstreamTimeout",
]
