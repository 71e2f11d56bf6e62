"""Budget caps across replicas: spend = the latest `usage.spend.v1` record for the key, plus what
this gateway has served since that record's `as_of`, plus the worst-case cost of requests in
flight. A request reserves its worst case before forwarding and settles to its real cost after.

Replicas that do not see each other's requests (the workers of `gateway serve --workers N`) split
what a key has left after its last spend record: each holds 1/`gateway_budget_shares` of it, so
that together they never pass a cap; a new spend record hands out the remainder again.

Stale spend data (documented in settings): for a key with a budget, the data is stale when a
request this gateway served for it is older than `gateway_spend_stale_after_s` and still not
covered by a spend record, or when `usage.spend.v1` has not been readable for that long.
`gateway_spend_stale_mode=closed` refuses such requests (503); `open` serves them, still
enforcing the cap on the data it has.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from keywarden.settings import Settings
from schemas.events.keys import WrappedKeyRecord
from schemas.events.request import Usage
from schemas.events.spend import SpendEvent
from schemas.pricing import PER_TOKENS, PricingCatalog
from services.gateway.errors import BudgetExceeded, SpendDataStale

ZERO = Decimal(0)

# Upper bounds on output tokens when the client sets no max_tokens (provider documentation,
# 2025); longest prefix wins, unknown models get `gateway_default_max_output_tokens`.
MODEL_OUTPUT_LIMITS: dict[str, int] = {
    "gpt-4o": 16_384,
    "gpt-4.1": 32_768,
    "o3": 100_000,
    "o4-mini": 100_000,
    "gpt-5": 128_000,
    "text-embedding": 0,
    "claude-opus-4": 32_000,
    "claude-sonnet-4": 64_000,
    "claude-haiku-4": 64_000,
    "claude-3-5-haiku": 8_192,
    "gemini-2.5": 65_536,
    "gemini-2.0": 8_192,
}
PROMPT_ESTIMATE_FACTOR = Decimal("1.25")  # the chars/4 estimate can run short; reserve more
PROMPT_ESTIMATE_SLACK = 32  # tokens of per-message framing the estimate does not see


def output_limit(model: str, default: int) -> int:
    name = model.lower().removeprefix("models/")
    best = max((p for p in MODEL_OUTPUT_LIMITS if name.startswith(p)), key=len, default=None)
    return MODEL_OUTPUT_LIMITS[best] if best is not None else default


def worst_case_cost(
    catalog: PricingCatalog,
    provider: str,
    model: str,
    prompt_tokens: int,
    output_tokens: int,
    at: datetime,
) -> Decimal:
    """The most a request can cost: every prompt token at the dearest input rate (uncached, cache
    read or cache write of any lifetime), every output token at the dearest output rate, both at
    the tier the prompt falls in (the pipeline's prices: the same lookup); a model nobody prices
    is priced as the provider's dearest one."""
    prompt = int(prompt_tokens * PROMPT_ESTIMATE_FACTOR) + PROMPT_ESTIMATE_SLACK
    rates = catalog.dearest_rates(provider, model, prompt, at)
    if rates is None:
        rates = catalog.provider_dearest_rates(provider, at)
    return (prompt * rates.input + output_tokens * rates.output) / PER_TOKENS


def next_midnight(now: datetime) -> datetime:
    return datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)


def next_month(now: datetime) -> datetime:
    first = now.date().replace(day=1)
    return datetime(first.year + first.month // 12, first.month % 12 + 1, 1, tzinfo=UTC)


class ServedSince:
    """What this gateway served for one key since its last spend record: in time order (a new
    record drops what it covers; the oldest entry judges staleness) and summed by UTC day and
    month, so that reading the spend costs the same however far behind the pipeline is."""

    __slots__ = ("entries", "by_day", "by_month")

    def __init__(self) -> None:
        self.entries: list[tuple[datetime, Decimal]] = []
        self.by_day: dict[date, Decimal] = {}
        self.by_month: dict[tuple[int, int], Decimal] = {}

    def add(self, occurred_at: datetime, cost: Decimal) -> None:
        bisect.insort(self.entries, (occurred_at, cost))
        day, month = occurred_at.date(), (occurred_at.year, occurred_at.month)
        self.by_day[day] = self.by_day.get(day, ZERO) + cost
        self.by_month[month] = self.by_month.get(month, ZERO) + cost

    def drop_until(self, end: int) -> None:
        """Forget entries[:end] (covered by a spend record, or of a past month)."""
        for occurred_at, cost in self.entries[:end]:
            day, month = occurred_at.date(), (occurred_at.year, occurred_at.month)
            self.by_day[day] -= cost
            self.by_month[month] -= cost
            if not self.by_day[day]:
                del self.by_day[day]
            if not self.by_month[month]:
                del self.by_month[month]
        del self.entries[:end]

    def drop_covered(self, as_of: datetime) -> None:
        self.drop_until(bisect.bisect_right(self.entries, as_of, key=lambda item: item[0]))

    def drop_before_month(self, now: datetime) -> None:
        first = datetime(now.year, now.month, 1, tzinfo=UTC)
        if self.entries and self.entries[0][0] < first:
            self.drop_until(bisect.bisect_left(self.entries, first, key=lambda item: item[0]))


@dataclass
class Reservation:
    key_id: str
    amount: Decimal
    settled: bool = False


@dataclass(frozen=True)
class Spend:
    today_usd: Decimal
    month_usd: Decimal
    stale: bool
    recorded_today_usd: Decimal = ZERO  # the parts from the last spend record alone
    recorded_month_usd: Decimal = ZERO


class BudgetLedger:
    """Spend per key as this gateway knows it; `reserve` and `settle` are the only writers."""

    def __init__(
        self, catalog: PricingCatalog, settings: Settings, spend_feed_ok: Callable[[], float | None]
    ) -> None:
        self.catalog = catalog
        self._stale_after = settings.gateway_spend_stale_after_s
        self._fail_closed = settings.gateway_spend_stale_mode == "closed"
        self._default_output = settings.gateway_default_max_output_tokens
        self._shares = settings.gateway_budget_shares
        self._spend_feed_ok = spend_feed_ok
        self._started = time.monotonic()
        self.records: dict[str, SpendEvent] = {}
        self._served: dict[str, ServedSince] = {}
        self._reserved: dict[str, Decimal] = {}

    # --- inputs ------------------------------------------------------------------------------

    def apply_record(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:
            return
        record = SpendEvent.model_validate_json(value)
        current = self.records.get(record.wrapped_key_id)
        if current is not None and current.as_of > record.as_of:
            return  # an older restatement arriving late
        self.records[record.wrapped_key_id] = record
        served = self._served.get(record.wrapped_key_id)
        if served is not None:
            served.drop_covered(record.as_of)

    # --- reading -----------------------------------------------------------------------------

    def spend(self, key_id: str, now: datetime) -> Spend:
        today, month = now.date(), now.strftime("%Y-%m")
        record = self.records.get(key_id)
        spent_today = record.spend_today_usd if record and record.day == today else ZERO
        spent_month = record.spend_month_usd if record and record.month == month else ZERO
        recorded_today, recorded_month = spent_today, spent_month
        served = self._served.get(key_id)
        oldest: datetime | None = None
        if served is not None:
            served.drop_before_month(now)  # last month's requests no longer count
            spent_month += served.by_month.get((now.year, now.month), ZERO)
            spent_today += served.by_day.get(today, ZERO)
            oldest = served.entries[0][0] if served.entries else None
        in_flight = self._reserved.get(key_id, ZERO)
        return Spend(
            spent_today + in_flight,
            spent_month + in_flight,
            self._is_stale(oldest, now),
            recorded_today,
            recorded_month,
        )

    def _is_stale(self, oldest_served: datetime | None, now: datetime) -> bool:
        feed_ok = self._spend_feed_ok() or self._started
        if time.monotonic() - feed_ok > self._stale_after:
            return True
        return (
            oldest_served is not None
            and (now - oldest_served).total_seconds() > self._stale_after
        )

    def worst_case(
        self, provider: str, model: str, prompt_tokens: int, max_output: int | None, at: datetime
    ) -> Decimal:
        output = max_output if max_output is not None else output_limit(model, self._default_output)
        return worst_case_cost(self.catalog, provider, model, prompt_tokens, output, at)

    def cost(self, provider: str, model: str | None, usage: Usage, at: datetime) -> Decimal | None:
        return self.catalog.price(provider, model, usage, at).cost_usd

    # --- reserve and settle ---------------------------------------------------------------

    def reserve(self, key: WrappedKeyRecord, amount: Decimal, now: datetime) -> Reservation | None:
        """Hold `amount` against the key's caps, or raise `BudgetExceeded` / `SpendDataStale`.
        Synchronous on purpose: check and hold happen with no await in between."""
        policy = key.policy
        if policy.daily_budget_usd is None and policy.monthly_budget_usd is None:
            return None
        spend = self.spend(key.key_id, now)
        if spend.stale and self._fail_closed:
            raise SpendDataStale(
                f"spend data for key {key.key_id} is stale and the gateway fails closed; retry "
                "later"
            )
        caps = (
            ("daily", policy.daily_budget_usd, spend.today_usd, spend.recorded_today_usd,
             next_midnight(now)),
            ("monthly", policy.monthly_budget_usd, spend.month_usd, spend.recorded_month_usd,
             next_month(now)),
        )
        shares = self._shares
        for period, cap, spent, recorded, resets_at in caps:
            # This replica's own part (served since the record, in flight, this request) must
            # fit in its share of what the record leaves; with one share, spent + amount <= cap.
            if cap is not None and recorded + (spent - recorded + amount) * shares > cap:
                reached = "reached" if spent >= cap else "would be exceeded by this request"
                if shares > 1 and spent < cap:
                    reached += f" (this gateway process holds 1/{shares} of what is left)"
                raise BudgetExceeded(
                    f"{period} budget cap of ${cap} USD for key {key.key_id} {reached} "
                    f"(spent ${spent.quantize(Decimal('0.000001'))}, this request may cost up to "
                    f"${amount.quantize(Decimal('0.000001'))}); resets at "
                    f"{resets_at.strftime('%Y-%m-%dT%H:%M:%SZ')}",
                    retry_after_s=int((resets_at - now).total_seconds()) + 1,
                )
        self._reserved[key.key_id] = self._reserved.get(key.key_id, ZERO) + amount
        return Reservation(key.key_id, amount)

    def settle(
        self,
        reservation: Reservation | None,
        key_id: str,
        cost: Decimal | None,
        occurred_at: datetime,
    ) -> None:
        """Release the hold and count the real cost (None: unknown, count the reservation)."""
        if reservation is not None and not reservation.settled:
            reservation.settled = True
            left = self._reserved.get(key_id, ZERO) - reservation.amount
            if left > ZERO:
                self._reserved[key_id] = left
            else:
                self._reserved.pop(key_id, None)
            if cost is None:
                cost = reservation.amount
            if cost:
                served = self._served.get(key_id)
                if served is None:
                    served = self._served[key_id] = ServedSince()
                served.add(occurred_at, cost)


__all__ = ["BudgetLedger", "Reservation", "Spend", "output_limit", "worst_case_cost"]
