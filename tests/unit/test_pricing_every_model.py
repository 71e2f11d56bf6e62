# ruff: noqa: E501  (each row keeps its hand arithmetic on one line)
"""Cost of one request on EVERY catalog entry, to the last digit, with prompt-cache reads and
writes and reasoning tokens. The expected figures were worked out by hand (integer arithmetic on
the published rates, shown in each row's comment), not by calling the code under test.

The request: 1,234,567 input tokens of which 345,678 are cache reads and 12,345 cache writes
(so 876,544 uncached), and 98,765 output tokens of which 4,321 are reasoning. Rates are $ per 1M
tokens; a missing cache-write rate bills writes as input, a missing cached rate bills reads as
input, reasoning is billed as output in every current entry.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from decimal import Decimal

import pytest

from schemas.events.request import Usage
from schemas.pricing import PricingStatus, load_catalog

CATALOG = load_catalog()
USAGE = Usage(input_tokens=1_234_567, cached_input_tokens=345_678, cache_write_tokens=12_345,
              output_tokens=98_765, reasoning_tokens=4_321)

EXPECTED = [
    ("openai/gpt-4o@2024-10-01", "3.641970000"),  # 876544*2.50 + 345678*1.25 + 12345*2.50 + 98765*10
    ("openai/gpt-4o-mini@2024-10-01", "0.218518200"),  # 876544*.15 + 345678*.075 + 12345*.15 + 98765*.60
    ("openai/gpt-4.1@2025-04-14", "2.740737000"),  # 876544*2 + 345678*.50 + 12345*2 + 98765*8
    ("openai/gpt-4.1-mini@2025-04-14", "0.548147400"),  # 876544*.40 + 345678*.10 + 12345*.40 + 98765*1.60
    ("openai/gpt-4.1-nano@2025-04-14", "0.137036850"),  # 876544*.10 + 345678*.025 + 12345*.10 + 98765*.40
    ("openai/o3@2025-04-16", "13.703685000"),  # 876544*10 + 345678*2.50 + 12345*10 + 98765*40
    ("openai/o3@2025-06-10", "2.740737000"),  # 876544*2 + 345678*.50 + 12345*2 + 98765*8
    ("openai/o4-mini@2025-04-16", "1.507405350"),  # 876544*1.10 + 345678*.275 + 12345*1.10 + 98765*4.40
    ("openai/gpt-5@2025-08-07", "2.141971000"),  # 876544*1.25 + 345678*.125 + 12345*1.25 + 98765*10
    ("openai/gpt-5-mini@2025-08-07", "0.428394200"),  # 876544*.25 + 345678*.025 + 12345*.25 + 98765*2
    ("openai/gpt-5-nano@2025-08-07", "0.085678840"),  # 876544*.05 + 345678*.005 + 12345*.05 + 98765*.40
    ("openai/text-embedding-3-small@2024-01-25", "0.024691340"),  # 1234567*.02 + 98765*0
    ("openai/text-embedding-3-large@2024-01-25", "0.160493710"),  # 1234567*.13 + 98765*0
    ("anthropic/claude-opus-4-1@2025-08-05", "21.305520750"),  # 876544*15 + 345678*1.50 + 12345*18.75 + 98765*75
    ("anthropic/claude-opus-4-5@2025-11-24", "7.101840250"),  # 876544*5 + 345678*.50 + 12345*6.25 + 98765*25
    ("anthropic/claude-sonnet-4@2025-05-22", "4.261104150"),  # 876544*3 + 345678*.30 + 12345*3.75 + 98765*15
    ("anthropic/claude-sonnet-4-5@2025-09-29", "4.261104150"),  # 876544*3 + 345678*.30 + 12345*3.75 + 98765*15
    ("anthropic/claude-haiku-4-5@2025-10-15", "1.420368050"),  # 876544*1 + 345678*.10 + 12345*1.25 + 98765*5
    ("anthropic/claude-3-5-haiku@2024-11-04", "1.136294440"),  # 876544*.80 + 345678*.08 + 12345*1 + 98765*4
    ("google/gemini-2.5-pro@2025-06-17", "2.141971000"),  # 876544*1.25 + 345678*.125 + 12345*1.25 + 98765*10
    ("google/gemini-2.5-flash@2025-06-17", "0.523949540"),  # 876544*.30 + 345678*.03 + 12345*.30 + 98765*2.50
    ("google/gemini-2.5-flash-lite@2025-07-22", "0.131851680"),  # 876544*.10 + 345678*.01 + 12345*.10 + 98765*.40
    ("google/gemini-2.0-flash@2025-02-05", "0.137036850"),  # 876544*.10 + 345678*.025 + 12345*.10 + 98765*.40
]  # fmt: skip


def test_the_table_covers_every_catalog_entry() -> None:
    assert sorted(entry for entry, _ in EXPECTED) == sorted(e.entry_id for e in CATALOG.prices)


@pytest.mark.parametrize(("entry_id", "expected"), EXPECTED, ids=[e for e, _ in EXPECTED])
def test_cost_of_every_model_is_exact_to_the_last_digit(entry_id: str, expected: str) -> None:
    provider, rest = entry_id.split("/", 1)
    model, effective = rest.rsplit("@", 1)
    at = datetime.combine(datetime.fromisoformat(effective).date(), time(12), tzinfo=UTC)
    priced = CATALOG.price(provider, model, USAGE, at)
    assert priced.status is PricingStatus.PRICED
    assert priced.price_entry_id == entry_id
    assert priced.cost_usd == Decimal(expected)
    assert f"{priced.cost_usd:f}" == expected  # nine decimals, never a float or an exponent
