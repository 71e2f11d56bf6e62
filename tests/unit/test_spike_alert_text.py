"""A spike alert says what it compared (the time of day, the kind of day, the centre and the
history), in the alert itself and in its Slack layout."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from pipelines.alerts.build import spike_alert
from pipelines.detect.spike import (
    HIGHEST,
    MEDIAN,
    SEASONAL,
    WindowBaseline,
    finding_for,
    robust_centre,
    thresholds,
)
from pipelines.rollups.volume import Volume
from schemas.events.request import KeyTags
from services.notifier.render import render_alert

POINT = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)  # a Tuesday


def night_spike() -> tuple[WindowBaseline, Volume]:
    history = tuple(Volume(n, n * 1000, Decimal(n) / 100) for n in (41, 39, 44, 41, 38, 43, 40))
    base = WindowBaseline(mode=SEASONAL, grain="hour", start=POINT - timedelta(hours=1),
                          end=POINT, day_kind="weekday", centre_name=MEDIAN, history=history,
                          centre=robust_centre(history, MEDIAN), history_days=7)
    return base, Volume(127, 127_000, Decimal("1.27"))


def test_the_alert_says_what_this_key_usually_does_at_this_time() -> None:
    base, observed = night_spike()
    triggered = thresholds(base, factor=Decimal(2), floor=10, alpha=1e-4).triggered(observed)
    assert "requests" in triggered
    alert = spike_alert(
        wrapped_key_id="wk_n", key_scope="night-batch", tags=KeyTags(team="t"), grain="hour",
        period="hour:2026-11-24T03:00", finding=finding_for(observed, base, triggered),
        factor=Decimal(2), significance=1e-4, at=POINT - timedelta(minutes=2))
    assert alert.summary.startswith(
        "3.0976x what this key usually does on a weekday 02:00-03:00 (median of the last 7 "
        "weekdays: 41 requests; this hour: 127 requests)")
    assert alert.details["baseline_mode"] == "seasonal"
    assert alert.details["history"] == "41,39,44,41,38,43,40"
    assert alert.details["window_minutes"] == "60" and alert.details["day_kind"] == "weekday"
    assert float(alert.details["p_value"]) < 1e-4

    blocks = json.dumps(render_alert(alert).blocks)
    assert "02:00-03:00 UTC on the last 7 weekdays (median)" in blocks
    assert "41, 39, 44, 41, 38, 43, 40" in blocks


def test_a_ramping_key_s_alert_names_the_growth_its_busiest_window_was_scaled_by() -> None:
    history = tuple(Volume(n, n * 1000, Decimal(n) / 100) for n in (47, 48, 48, 26, 18))
    growth = Decimal("1.24")
    base = WindowBaseline(mode=SEASONAL, grain="hour", start=POINT - timedelta(hours=1),
                          end=POINT, day_kind="weekday", centre_name=HIGHEST, history=history,
                          centre=robust_centre(history, HIGHEST, growth), history_days=5,
                          growth=growth)
    observed = Volume(150, 150_000, Decimal("1.50"))
    triggered = thresholds(base, factor=Decimal(2), floor=10, alpha=1e-4).triggered(observed)
    alert = spike_alert(
        wrapped_key_id="wk_r", key_scope="new-svc", tags=KeyTags(team="t"), grain="hour",
        period="hour:2026-11-24T03:00", finding=finding_for(observed, base, triggered),
        factor=Decimal(2), significance=1e-4, at=POINT - timedelta(minutes=2))
    assert ("(highest of the last 5 weekdays x1.24 for its growth (a key still ramping up): "
            "59.5 requests; this hour: 150 requests)") in alert.summary
    assert alert.details["centre"] == "highest" and alert.details["growth"] == "1.24"
    blocks = json.dumps(render_alert(alert).blocks)
    assert "02:00-03:00 UTC on the last 5 weekdays (highest x1.24 for its growth)" in blocks
