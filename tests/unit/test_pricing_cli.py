"""`keywarden pricing quote|list|show`: the interface scripts rely on (JSON, exit codes) and what
people read (rates, layers, sources). Expected costs are hand arithmetic (USD per 1M tokens)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from keywarden.cli import main
from schemas.pricing import LibraryPrices
from schemas.pricing.library import token_prices


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["pricing", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def price_snapshot(tmp_path: Path) -> Path:
    """A genai-prices data file as an operator would load it: gpt-4o at 2 in / 8 out."""
    data = [{"id": "openai", "name": "OpenAI", "api_pattern": "https://api\\.openai\\.com",
             "models": [{"id": "gpt-4o", "match": {"equals": "gpt-4o"},
                         "prices": {"input_mtok": "2", "output_mtok": "8"}}]}]
    snapshot = tmp_path / "data.json"
    snapshot.write_text(json.dumps(data))
    return snapshot


def test_quote_json_is_one_object_with_a_decimal_string_and_its_provenance(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "quote", "--provider", "anthropic", "--model",
                       "claude-sonnet-4-5-20250929", "--input-tokens", "10000",
                       "--cached-input-tokens", "2000", "--cache-write-tokens", "3000",
                       "--output-tokens", "500", "--at", "2026-12-01T10:00:00Z",
                       "--format", "json")  # fmt: skip
    quote = json.loads(out)
    # 5000 uncached*3 + 2000 reads*0.30 + 3000 writes*3.75 + 500 output*15 = 34350 per 1M
    assert (code, quote["cost_usd"]) == (0, "0.034350000")
    assert (quote["layer"], quote["layer_version"], quote["entry"]) == (
        "genai-prices", "0.2.3", "genai-prices:anthropic/claude-sonnet-4-5")
    assert quote["at"] == "2026-12-01T10:00:00Z"
    assert quote["rates_usd_per_mtok"]["cache_write"] == "3.75"


def test_quote_in_the_long_context_tier(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "quote", "--provider", "openai", "--model", "gpt-5.5",
                       "--input-tokens", "300000", "--output-tokens", "1000", "--format", "json")
    quote = json.loads(out)
    assert (code, quote["cost_usd"]) == (0, "3.045000000")  # 300000*10 + 1000*45 above 272k
    assert quote["rates_usd_per_mtok"]["input"] == "10"


def test_quote_names_our_override_when_it_priced(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "quote", "--provider", "openai", "--model", "o3",
                       "--input-tokens", "1000000", "--cached-input-tokens", "1000000",
                       "--output-tokens", "0", "--at", "2025-05-01", "--format", "json")
    quote = json.loads(out)
    assert (code, quote["cost_usd"], quote["layer"], quote["entry"]) == (
        0, "2.500000000", "override", "openai/o3@2025-04-16")


def test_quote_of_an_unknown_model_is_null_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "quote", "--provider", "openai", "--model", "gpt-99-turbo",
                       "--input-tokens", "10", "--output-tokens", "10", "--format", "json")
    quote = json.loads(out)
    assert code == 1
    assert (quote["cost_usd"], quote["pricing_status"], quote["layer"]) == (
        None, "unknown_model", None)


def test_quote_table_leads_with_the_cost(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "quote", "--provider", "google", "--model", "gemini-2.5-flash",
                       "--input-tokens", "1000", "--output-tokens", "400")
    assert code == 0
    assert out.splitlines()[0].split() == ["cost_usd", "0.001300000"]  # 1000*0.30 + 400*2.50


def test_quote_refuses_parts_larger_than_the_prompt(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "quote", "--provider", "openai", "--model", "gpt-4o",
                       "--input-tokens", "10", "--cached-input-tokens", "11",
                       "--output-tokens", "0")
    assert code == 2 and "must not exceed --input-tokens" in err


def test_list_prints_every_token_priced_model_of_a_provider(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "list", "--provider", "anthropic")
    expected = [m.model_id for m in LibraryPrices.bundled().models("anthropic")
                if token_prices(m.info.get_prices(datetime.now(UTC)))]
    lines = [line for line in out.splitlines() if line.startswith("anthropic ")]
    assert code == 0
    assert [line.split()[1] for line in lines] == expected
    assert out.splitlines()[-1].startswith(f"{len(expected)} models priced by tokens")
    sonnet = next(line for line in lines if line.split()[1] == "claude-sonnet-4-5")
    assert "cache_write_1h 6" in sonnet and ">200000: input 6" in sonnet


def test_show_lists_both_layers_over_time_with_sources(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "show", "o3", "--provider", "openai")
    assert code == 0
    assert "now genai-prices:openai/o3@2025-06-10" in out
    assert "openai/o3@2025-04-16: from 2025-04-16 until 2025-06-10: input 10.00" in out
    assert "https://openai.com/index/introducing-o3-and-o4-mini/ (2025-04-16)" in out
    assert "genai-prices:openai/o3@2025-06-10: from 2025-06-10: input 2" in out


def test_show_of_an_unknown_model_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "show", "gpt-99-turbo")
    assert code == 1 and "no price for 'gpt-99-turbo'" in err


def test_the_price_files_in_the_settings_are_the_ones_quoted(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    from keywarden.settings import get_settings

    snapshot = price_snapshot(tmp_path)
    monkeypatch.setenv("KEYWARDEN_PRICING_DATA_FILE", str(snapshot))
    get_settings.cache_clear()
    try:
        code, out, _ = run(capsys, "quote", "--provider", "openai", "--model", "gpt-4o",
                           "--input-tokens", "1000000", "--output-tokens", "1000000",
                           "--format", "json")
        quote = json.loads(out)
        assert (code, quote["cost_usd"]) == (0, "10.000000000")  # 2 + 8, not the bundled 12.50
        assert quote["layer_version"].startswith("0.2.3+data.")
        monkeypatch.setenv("KEYWARDEN_PRICING_DATA_FILE", str(tmp_path / "missing.json"))
        get_settings.cache_clear()
        code, _, err = run(capsys, "list")
        assert code == 2 and "KEYWARDEN_PRICING_DATA_FILE" in err
    finally:
        get_settings.cache_clear()


def test_list_and_show_include_our_overrides(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    from keywarden.settings import get_settings

    source = {"source": "https://example.com/msa", "source_date": "2026-11-01"}
    overrides = {"overrides_version": "acme.3", "entries": [
        {"provider": "openai", "model": "acme-distill-1", "effective_from": "2026-11-01",
         "reason": "internal fine-tune host", "input": "0.5", "output": "1.5", **source},
        {"provider": "openai", "model": "gpt-4o", "effective_from": "2026-11-01",
         "reason": "negotiated", "discount_percent": "15", **source},
    ]}  # fmt: skip
    path = tmp_path / "overrides.json"
    path.write_text(json.dumps(overrides))
    monkeypatch.setenv("KEYWARDEN_PRICING_OVERRIDES_FILE", str(path))
    get_settings.cache_clear()
    try:
        code, out, _ = run(capsys, "list", "--provider", "openai")
        lines = {line.split()[1]: line for line in out.splitlines()
                 if line.startswith("openai ")}  # fmt: skip
        assert code == 0
        assert lines["acme-distill-1"].endswith("<- openai/acme-distill-1@2026-11-01")
        assert "input 0.5, output 1.5" in lines["acme-distill-1"]
        assert lines["gpt-4o"].endswith("<- openai/gpt-4o@2026-11-01")
        code, out, _ = run(capsys, "show", "gpt-4o", "--provider", "openai")
        assert code == 0
        assert "now openai/gpt-4o@2026-11-01 (override acme.3)" in out
        assert "15% off the library price" in out
        code, out, _ = run(capsys, "quote", "--provider", "openai", "--model", "gpt-4o",
                           "--input-tokens", "1000000", "--output-tokens", "1000000",
                           "--format", "json")
        assert json.loads(out)["cost_usd"] == "10.625000000"  # (2.50 + 10.00) less 15%
    finally:
        get_settings.cache_clear()


_OFFLINE = """
import socket, sys

def refuse(*args, **kwargs):
    raise OSError("network used while pricing")

socket.socket.connect = socket.socket.connect_ex = refuse
socket.create_connection = socket.getaddrinfo = refuse

from keywarden.cli import main
from schemas.pricing import load_catalog

load_catalog(prices_file=sys.argv[1])
codes = [
    main(["pricing", "quote", "--provider", "anthropic", "--model", "claude-sonnet-4-5",
          "--input-tokens", "300000", "--output-tokens", "10", "--format", "json"]),
    main(["pricing", "list", "--provider", "google"]),
    main(["pricing", "show", "gpt-5.5"]),
]
sys.exit(max(codes))
"""


def test_pricing_needs_no_network(tmp_path) -> None:
    snapshot = price_snapshot(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYWARDEN_PRICING_")}
    done = subprocess.run([sys.executable, "-c", _OFFLINE, str(snapshot)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert '"cost_usd": "1.800225000"' in done.stdout  # 300000*6 + 10*22.5 above 200k
