"""keywarden's benchmark suite: `python -m bench [--quick]` runs every benchmark, each beside its
baseline in the same run, and writes bench-results/summary-<timestamp>.json."""
