"""The admin API's request and response bodies: validated on the way in, and the source of the
schemas in the OpenAPI document (services/admin/openapi.py)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events.admin import Role
from schemas.events.keys import SCOPE_PATTERN, KeyPolicy
from schemas.events.request import KeyTags


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeyCreate(_Body):
    scope: str = Field(
        max_length=64, description=f"readable slug matching {SCOPE_PATTERN}, e.g. team-a-chat-prod"
    )
    tags: KeyTags = Field(default_factory=KeyTags)
    policy: KeyPolicy = Field(default_factory=KeyPolicy)
    expires_at: datetime | None = Field(default=None, description="when the secret stops working")
    rotation_days: int | None = Field(
        default=None, gt=0, le=3650, description="rotation policy: expire each secret after N days"
    )


class PolicyChange(_Body):
    """Only the fields present change; null removes a limit."""

    daily_budget_usd: Decimal | None = Field(default=None, gt=0)
    monthly_budget_usd: Decimal | None = Field(default=None, gt=0)
    rpm: int | None = Field(default=None, gt=0)
    allowed_models: list[str] | None = None
    allowed_cidrs: list[str] | None = None


class TagsChange(_Body):
    """Only the fields present change; an `extra` tag with an empty value is removed."""

    team: str | None = None
    service: str | None = None
    environment: str | None = None
    cost_center: str | None = None
    extra: dict[str, str] | None = None


class ExpiryChange(_Body):
    expires_at: datetime | None = None
    rotation_days: int | None = Field(default=None, gt=0, le=3650)


class KeyRotate(_Body):
    grace_seconds: float | None = Field(
        default=None, ge=0, description="how long the old secret keeps working (default 24 h)"
    )
    expires_at: datetime | None = None


class KeyRevoke(_Body):
    reason: str = Field(default="", max_length=500)


class IssuedSecret(BaseModel):
    """A key or credential and its secret: the only time the secret is shown."""

    secret: str
    key: dict[str, Any] | None = None
    credential: dict[str, Any] | None = None


class ProviderAdd(_Body):
    provider: Literal["openai", "anthropic", "google"]
    secret: str = Field(min_length=1, description="the provider's own API key")
    rotation_days: Literal[30, 60, 90] | None = None


class ProviderRotate(ProviderAdd):
    grace_hours: float | None = Field(default=None, ge=0)


class ProviderRekey(_Body):
    to_version: int | None = Field(default=None, gt=0)


class ProviderRetire(_Body):
    provider_key_id: str | None = Field(
        default=None, description="one key; absent: every key whose grace period is over"
    )


class CredentialCreate(_Body):
    name: str = Field(min_length=1, max_length=128, description="the person or service behind it")
    role: Role
    team: str = Field(default="", max_length=128)
    scope: str = Field(default="", description="service credentials: the key scope they manage")
    expires_in_days: float | None = Field(default=None, gt=0, description="default 90")


class CredentialRevoke(_Body):
    reason: str = Field(default="", max_length=500)


class CeilingSet(_Body):
    allowed_models: list[str] = Field(default_factory=list)
    daily_budget_usd: Decimal | None = Field(default=None, gt=0)
    monthly_budget_usd: Decimal | None = Field(default=None, gt=0)
    rpm: int | None = Field(default=None, gt=0)


class LeakReport(BaseModel):
    """One leaked token, in the shape public secret-scanning programs send."""

    model_config = ConfigDict(extra="allow")

    token: str = Field(min_length=1, max_length=512)
    type: str = Field(default="", max_length=128)
    url: str = Field(default="", max_length=2048)
    source: str = Field(default="", max_length=128)


class LeakReceipt(BaseModel):
    """The same for every report: it never says whether a token was known."""

    received: int


class ErrorBody(BaseModel):
    class Detail(BaseModel):
        code: str
        message: str
        retriable: bool = False

    error: Detail


__all__ = [
    "CeilingSet",
    "CredentialCreate",
    "CredentialRevoke",
    "ErrorBody",
    "ExpiryChange",
    "IssuedSecret",
    "KeyCreate",
    "KeyRevoke",
    "KeyRotate",
    "LeakReceipt",
    "LeakReport",
    "PolicyChange",
    "ProviderAdd",
    "ProviderRekey",
    "ProviderRetire",
    "ProviderRotate",
    "TagsChange",
]
