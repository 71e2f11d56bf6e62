"""`keywarden report …`: the named FinOps queries (schemas/clickhouse/queries/) printed as aligned
tables in the terminal, or as CSV / JSON for other tools."""

from keywarden.cli.report.commands import add_report_commands
from keywarden.cli.report.progress import Progress
from keywarden.cli.report.render import render, render_csv, render_json, render_table

__all__ = ["Progress", "add_report_commands", "render", "render_csv", "render_json", "render_table"]
