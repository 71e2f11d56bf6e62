"""`spend.v1`: a key's current spend, published on the compacted `usage.spend.v1` for gateways."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SPEND_SCHEMA: Final = "spend.v1"


class SpendEvent(BaseModel):
    """Spend of one wrapped key for the current UTC day and month, as the pipeline has priced it.

    Keyed by `wrapped_key_id` on a compacted topic: the latest record per key is the truth.
    `as_of` is the event time of the newest event counted, so a gateway can add what it has
    served itself since then.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["spend.v1"] = Field(default=SPEND_SCHEMA, alias="schema")
    wrapped_key_id: str = Field(min_length=1, max_length=128)
    day: date
    month: str = Field(pattern=r"^\d{4}-\d{2}$")
    spend_today_usd: Decimal = Field(ge=0)
    spend_month_usd: Decimal = Field(ge=0)
    requests_today: int = Field(default=0, ge=0)
    as_of: datetime
    updated_at: datetime

    @field_validator("as_of", "updated_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("timestamps must carry a timezone")
        return value.astimezone(UTC)

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()
