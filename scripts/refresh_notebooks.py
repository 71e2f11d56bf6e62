"""Execute the FinOps notebooks and store them with their outputs, so a reader sees the charts
without running anything. They run against a throw-away embedded warehouse seeded the way the
notebook test seeds it (`tests/support/demo_seed.py`: eight days of demo-like traffic priced with
the real catalog, a spike on one key, one alert delivery).

    .venv/bin/python scripts/refresh_notebooks.py
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deploy.local.warehouse import spawn_warehouse, stop_warehouse  # noqa: E402
from keywarden.clickhouse import get_client  # noqa: E402
from schemas.clickhouse.migrations import migrate  # noqa: E402
from tests.support.demo_seed import seed_demo  # noqa: E402

NOTEBOOKS = ("chargeback.ipynb", "anomaly_investigation.ipynb")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="kw-notebooks-"))
    port = _free_port()
    process = spawn_warehouse(data_dir, port)
    try:
        url = f"http://default:@127.0.0.1:{port}/notebooks"
        client = get_client(url, create_database=True)
        try:
            migrate(client)
            rows = seed_demo(client)
        finally:
            client.close()
        print(f"seeded {rows} request rows")
        os.environ["KEYWARDEN_CLICKHOUSE_URL"] = url
        for name in NOTEBOOKS:
            path = ROOT / "notebooks" / name
            notebook = nbformat.read(path, as_version=4)
            NotebookClient(notebook, timeout=120, kernel_name="python3",
                           resources={"metadata": {"path": str(path.parent)}}).execute()
            for cell in notebook.cells:  # execution counts and timings would churn the diff
                cell.get("metadata", {}).pop("execution", None)
            nbformat.write(notebook, path)
            print(f"executed {path.relative_to(ROOT)}")
    finally:
        stop_warehouse(process)
    return 0


if __name__ == "__main__":
    sys.exit(main())
