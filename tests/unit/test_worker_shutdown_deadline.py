"""The pipeline worker's shutdown deadline: once armed, it ends the process after
`KEYWARDEN_PIPELINE_SHUTDOWN_TIMEOUT_SECONDS` even when the event loop never returns (here: a
sleeping main thread), with status 1 (or the worker's own exit code) and a log line saying why.
`tests/faults/test_pipeline_shutdown.py` runs a real worker, where the stop may also finish by
itself in time; this pins the deadline itself."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

CHILD = textwrap.dedent("""
    import logging, sys, time, types
    from pipelines.worker import PipelineWorker
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    worker = types.SimpleNamespace(
        settings=types.SimpleNamespace(pipeline_shutdown_timeout_seconds=0.3),
        _deadline=None, exit_code={exit_code})
    PipelineWorker._arm_deadline(worker)
    PipelineWorker._arm_deadline(worker)  # armed once: a second call changes nothing
    time.sleep(30)  # a stop that never finishes
    sys.exit(0)
""")


def run_child(exit_code: int) -> tuple[int, str, float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", CHILD.format(exit_code=exit_code)],
                          capture_output=True, text=True, timeout=25)
    return done.returncode, done.stderr, time.monotonic() - started


def test_the_deadline_ends_a_stuck_shutdown_with_status_1_and_says_why() -> None:
    code, log, seconds = run_child(0)
    assert code == 1, log
    assert "shutdown did not finish within" in log
    assert seconds < 20  # the child would sleep 30 s without the deadline


def test_the_deadline_keeps_the_workers_own_exit_code() -> None:
    code, log, _ = run_child(70)  # a worker that stopped consuming
    assert code == 70, log
