"""A record batch the worker cannot decode never stops the stream: it is logged, recorded in
request_dead_letters as an offset range and stepped over, and the records after it are stored.

The batch is real: librdkafka publishes it lz4-compressed to the real broker, and the worker runs
without its lz4/zstd/snappy codec library (cramjam hidden from its imports), exactly the
deployment of issue 17 whose fetcher died with UnsupportedCodecError on every restart."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from keywarden.kafka import ensure_topics
from keywarden.settings import load_settings
from keywarden.synthetic import DEFAULT_KEYS, SyntheticKey, synthetic_traffic
from schemas import topics
from tests.support.analytics import query
from tests.support.producers import as_records, librdkafka_publish
from tests.support.waiting import wait_until


def without_codecs(tmp_path: Path) -> str:
    """A PYTHONPATH entry under which `import cramjam` fails, as on a host without the codecs."""
    shim = tmp_path / "no-codecs" / "cramjam"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text(
        'raise ImportError("cramjam hidden by the test: no lz4/zstd/snappy codecs here")\n')
    return str(shim.parent)


async def test_an_undecodable_batch_is_dead_lettered_as_a_range_and_the_stream_goes_on(
    kafka_broker, warehouse_db, run_pipeline, tmp_path
) -> None:
    settings = load_settings(kafka_bootstrap=kafka_broker.bootstrap)
    await ensure_topics(settings)
    key = SyntheticKey(**{**DEFAULT_KEYS[0].__dict__,
                          "wrapped_key_id": f"wk_codecless_{uuid.uuid4().hex[:8]}"})
    before, unreadable, after = (synthetic_traffic(10, keys=[key], seed=s) for s in (1, 2, 3))
    worker = run_pipeline(warehouse_db, PYTHONPATH=without_codecs(tmp_path))

    publish = librdkafka_publish
    await asyncio.to_thread(publish, kafka_broker.bootstrap, topics.REQUESTS,
                            as_records(before), "none")
    lz4_at = await asyncio.to_thread(publish, kafka_broker.bootstrap, topics.REQUESTS,
                                     as_records(unreadable), "lz4")
    await asyncio.to_thread(publish, kafka_broker.bootstrap, topics.REQUESTS,
                            as_records(after), "none")
    (partition,) = {p for p, _ in lz4_at}
    lz4_offsets = {offset for _, offset in lz4_at}

    def stored_ids() -> set[str]:
        rows = query(warehouse_db, "SELECT toString(event_id) FROM request_events FINAL "
                     "WHERE wrapped_key_id = {key:String}", key=key.wrapped_key_id)
        return {row[0] for row in rows}

    readable = {str(e.event_id) for e in before + after}
    await asyncio.to_thread(wait_until, lambda: stored_ids() == readable, 90,
                            what="the 20 readable events, before and after the lz4 batch")

    def dead_ranges() -> list[tuple]:
        return query(
            warehouse_db,
            "SELECT source_offset, source_last_offset, reason, detail FROM request_dead_letters "
            "FINAL WHERE source_topic = {topic:String} AND source_partition = {p:UInt32} "
            "AND source_last_offset >= {lo:UInt64} AND source_offset <= {hi:UInt64}",
            topic=topics.REQUESTS, p=partition, lo=min(lz4_offsets), hi=max(lz4_offsets))

    ranges = await asyncio.to_thread(wait_until, dead_ranges, 30, what="dead-letter range")
    covered = {o for first, last, _, _ in ranges for o in range(first, last + 1)}
    assert covered == lz4_offsets  # exactly the lz4 batch: nothing readable, nothing missed
    assert {reason for _, _, reason, _ in ranges} == {"unsupported_codec"}
    assert all("lz4" in detail for _, _, _, detail in ranges)
    assert worker.process is not None and worker.process.poll() is None  # still running
    assert "UNDECODABLE RECORD BATCH" in worker.log_path.read_text(errors="replace")
    status, metrics = worker.probe("/metrics")
    assert status == 200
    counted = next(float(line.split()[-1]) for line in metrics.splitlines()
                   if line.startswith("keywarden_pipeline_undecodable_batches_total "))
    assert counted >= len(ranges)  # other tests' compressed batches on the topic count too
    assert worker.probe("/healthz")[0] == 200  # stepped over, alive and consuming
