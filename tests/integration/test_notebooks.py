"""The FinOps notebooks run top to bottom against a warehouse seeded with demo-like traffic
(synthetic requests priced with the real catalog, a spike, an alert delivery) and draw their
charts and tables."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from keywarden.settings import PROJECT_ROOT
from tests.support.demo_seed import SPIKE_KEY, seed_demo

NOTEBOOKS = PROJECT_ROOT / "notebooks"


@pytest.fixture(scope="module")
def demo_url(warehouse: object) -> str:
    return str(warehouse.migrated_database("notebooks", seed=seed_demo))  # type: ignore[attr-defined]


def execute(path: Path, url: str, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    """Run a notebook in a fresh python3 kernel (this venv's), its ClickHouse URL from the env."""
    monkeypatch.setenv("KEYWARDEN_CLICKHOUSE_URL", url)
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=60, kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()  # raises CellExecutionError on the first failing cell
    return notebook


def tagged(notebook: nbformat.NotebookNode, tag: str) -> list[nbformat.NotebookNode]:
    return [c for c in notebook.cells if tag in c.get("metadata", {}).get("tags", [])]


def text_of(cell: nbformat.NotebookNode) -> str:
    parts = []
    for output in cell.outputs:
        parts.append(output.get("text", ""))
        parts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def assert_charts_and_tables(notebook: nbformat.NotebookNode) -> None:
    charts, tables = tagged(notebook, "chart"), tagged(notebook, "table")
    assert charts and tables
    for cell in charts:
        assert any("image/png" in o.get("data", {}) for o in cell.outputs), cell.source[:60]
    for cell in tables:
        assert any("text/html" in o.get("data", {}) for o in cell.outputs), cell.source[:60]
    assert not any(o.get("output_type") == "error" for c in notebook.cells
                   for o in c.get("outputs", []))


def test_chargeback_notebook_runs_and_charts_spend_by_team_and_cost_center(
    demo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    notebook = execute(NOTEBOOKS / "chargeback.ipynb", demo_url, monkeypatch)
    assert_charts_and_tables(notebook)
    out = "\n".join(text_of(c) for c in notebook.cells if c.cell_type == "code")
    assert "Period: 2026-11-01 to 2026-12-01" in out
    assert "Total spend: $" in out
    for team in ("payments", "search", "growth"):
        assert team in out
    assert "CC-100" in out


def test_anomaly_notebook_shows_the_spike_and_the_alert(
    demo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    notebook = execute(NOTEBOOKS / "anomaly_investigation.ipynb", demo_url, monkeypatch)
    assert_charts_and_tables(notebook)
    out = "\n".join(text_of(c) for c in notebook.cells if c.cell_type == "code")
    assert f"Key {SPIKE_KEY.wrapped_key_id}" in out
    assert "hour(s) above the alert threshold" in out  # against the seasonal baseline
    assert "\n0 hour(s) above" not in "\n" + out and "1 spike alert(s) in the window" in out
    assert "alert_deliveries: 1 row(s)" in out


def test_notebooks_are_stored_with_their_charts_and_tables() -> None:
    """A reader sees the outputs without running anything (`scripts/refresh_notebooks.py`)."""
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert [p.name for p in paths] == ["anomaly_investigation.ipynb", "chargeback.ipynb"]
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        assert_charts_and_tables(notebook)
