"""`AlertEvent`s for each rule, with deterministic ids (rule, key, period, subject).

Open alerts are remembered as small `facts` dicts (in the key's state or the `alerts` table) so
that the RESOLVED event can repeat the id, kind and period the notifier threads on.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from pipelines.detect.spike import SpikeFinding, WindowBaseline
from schemas.events.alert import AlertEvent, AlertKind, AlertState, Severity
from schemas.events.request import KeyTags

_METRIC_WORDS = {"requests": "requests", "tokens": "tokens", "cost_usd": "cost (USD)"}


def _fmt(value: Decimal) -> str:
    return f"{value.normalize():,f}" if value == value.to_integral() else f"{value:,.4f}"


def facts_of(alert: AlertEvent) -> dict[str, str]:
    """What must be remembered about an open alert to resolve it later."""
    return {"id": str(alert.alert_id), "kind": alert.kind.value, "period": alert.period,
            "title": alert.title, "metric": alert.metric, "model": alert.model or "",
            "provider_key_id": alert.provider_key_id or "", "since": alert.detected_at.isoformat()}


def resolved(facts: dict[str, str], *, at: datetime, wrapped_key_id: str, key_scope: str = "",
             tags: KeyTags | None = None, summary: str = "") -> AlertEvent:
    """The RESOLVED state change of an open alert: same id, so the notifier threads it."""
    return AlertEvent(
        alert_id=uuid.UUID(facts["id"]), kind=AlertKind(facts["kind"]), state=AlertState.RESOLVED,
        severity=Severity.INFO, detected_at=at, wrapped_key_id=wrapped_key_id,
        key_scope=key_scope, tags=tags or KeyTags(), provider_key_id=facts.get("provider_key_id")
        or None, model=facts.get("model") or None, title=f"Resolved: {facts['title']}"[:300],
        summary=summary, period=facts["period"], metric=facts.get("metric", ""),
        details={"opened_at": facts.get("since", "")},
    )


def _amount(metric: str, value: Decimal) -> str:
    if metric == "cost_usd":
        return f"${value.quantize(Decimal('0.01')) if value >= 1 else _fmt(value)}"
    if value != value.to_integral():  # a median of an even count, a ramping key's scaled centre
        return f"{value.quantize(Decimal('0.1')):,f} {metric}"
    return f"{_fmt(value)} {metric}"


def _span(minutes: int, grain: str) -> str:
    if grain == "day":
        return "today so far"
    if minutes == 60:
        return "this hour"
    if minutes % 60 == 0:
        return f"these {minutes // 60} hours"
    return f"these {minutes} minutes"


def _growth(compared: WindowBaseline) -> str:
    """A ramping key's scale as written in its alert: '1.24', '2'."""
    return f"{compared.growth.normalize():f}"


def _usual(compared: WindowBaseline) -> str:
    """'on a weekday 02:00-03:00' and 'median of the last 7 weekdays' for a seasonal baseline."""
    days = len(compared.history)
    kind = {"weekday": "weekday", "weekend": "weekend day"}.get(compared.day_kind, "day")
    if compared.centre_name == "highest":
        scaled = f" x{_growth(compared)} for its growth" if compared.growth != 1 else ""
        centre = f"highest of the last {days} {kind}s{scaled} (a key still ramping up)"
    else:
        centre = f"{compared.centre_name} of the last {days} {kind}s"
    return centre


def spike_explanation(finding: SpikeFinding) -> str:
    """One sentence saying what was compared, e.g. '3.1x what this key usually does on a weekday
    02:00-03:00 (median of the last 7 weekdays: 41 requests; this hour: 127 requests)'."""
    head, compared = finding.headline, finding.compared
    assert compared is not None
    ratio = f"{head.ratio.normalize():f}x" if head.ratio is not None else "up from nothing"
    kind = {"weekday": "a weekday", "weekend": "a weekend day"}.get(compared.day_kind, "a day")
    clock = f"{compared.start:%H:%M}-{compared.end:%H:%M}"
    return (f"{ratio} what this key usually does on {kind} {clock} "
            f"({_usual(compared)}: {_amount(head.metric, head.baseline)}; "
            f"{_span(compared.minutes, compared.grain)}: {_amount(head.metric, head.observed)})")


def spike_alert(*, wrapped_key_id: str, key_scope: str, tags: KeyTags, grain: str, period: str,
                finding: SpikeFinding, factor: Decimal, at: datetime,
                significance: float | None = None) -> AlertEvent:
    head, compared = finding.headline, finding.compared
    assert compared is not None
    seasonal = compared.mode == "seasonal"
    ratio = f"{head.ratio}x" if head.ratio is not None else "from zero"
    details: dict[str, Any] = {
        "grain": grain, "history_days": str(compared.history_days), "factor": str(factor),
        "baseline_mode": compared.mode, "window_minutes": str(compared.minutes),
        "window": f"{compared.start:%H:%M}-{compared.end:%H:%M}", "day_kind": compared.day_kind,
        "centre": compared.centre_name,
        "history": ",".join(str(v) for v in compared.history_values(head.metric)),
    }
    if compared.growth != 1:
        details["growth"] = _growth(compared)
    if finding.p_value is not None:
        details["p_value"] = f"{finding.p_value:.2e}"
    for figure in finding.figures:
        details[f"{figure.metric}.observed"] = str(figure.observed)
        details[f"{figure.metric}.baseline"] = str(figure.baseline.quantize(Decimal("0.000001")))
        details[f"{figure.metric}.ratio"] = str(figure.ratio) if figure.ratio is not None else ""
    if seasonal:
        explanation = spike_explanation(finding)
        details["compared"] = explanation
        title = f"{key_scope or wrapped_key_id}: {_METRIC_WORDS[head.metric]} {explanation}"
        summary = (f"{explanation[0].upper()}{explanation[1:]}. Alerting at {factor}x"
                   + (f" and p < {significance:g} under Poisson noise." if significance else "."))
    else:
        what = "the last hour" if grain == "hour" else "today so far"
        base = "average hour" if grain == "hour" else "average day"
        title = (f"{key_scope or wrapped_key_id}: {_METRIC_WORDS[head.metric]} {ratio} the "
                 f"7-day {base}")
        summary = (f"{_METRIC_WORDS[head.metric]} in {what}: {_fmt(head.observed)} against an "
                   f"{base} of {_fmt(head.baseline)} over {compared.history_days} days "
                   f"(alerting at {factor}x).")
    return AlertEvent(
        alert_id=AlertEvent.make_id(AlertKind.SPIKE, wrapped_key_id, period, grain),
        kind=AlertKind.SPIKE, severity=Severity.WARNING, detected_at=at,
        wrapped_key_id=wrapped_key_id, key_scope=key_scope, tags=tags,
        title=title[:300], summary=summary[:2000],
        period=period, metric=head.metric, observed=head.observed,
        baseline=head.baseline.quantize(Decimal("0.000000001")), ratio=head.ratio,
        threshold=factor, details=details,
    )


def budget_alert(*, wrapped_key_id: str, key_scope: str, tags: KeyTags, period: str,
                 percent: int, spend: Decimal, cap: Decimal, at: datetime) -> AlertEvent:
    span = "daily" if period.startswith("day:") else "monthly"
    severity = (Severity.CRITICAL if percent >= 100
                else Severity.WARNING if percent >= 80 else Severity.INFO)
    return AlertEvent(
        alert_id=AlertEvent.make_id(AlertKind.BUDGET_THRESHOLD, wrapped_key_id, period,
                                    str(percent)),
        kind=AlertKind.BUDGET_THRESHOLD, severity=severity, detected_at=at,
        wrapped_key_id=wrapped_key_id, key_scope=key_scope, tags=tags,
        title=f"{key_scope or wrapped_key_id} reached {percent}% of its {span} budget",
        summary=f"Spent ${spend} of ${cap} ({span}, {period.split(':', 1)[1]}).",
        period=period, metric="spend_usd", observed=spend, threshold=Decimal(percent),
        limit_usd=cap, ratio=(spend / cap).quantize(Decimal("0.0001")),
    )


def first_use_alert(*, wrapped_key_id: str, key_scope: str, tags: KeyTags, model: str,
                    provider: str, at: datetime) -> AlertEvent:
    return AlertEvent(
        alert_id=AlertEvent.make_id(AlertKind.FIRST_MODEL_USE, wrapped_key_id, "", model),
        kind=AlertKind.FIRST_MODEL_USE, severity=Severity.INFO, detected_at=at,
        wrapped_key_id=wrapped_key_id, key_scope=key_scope, tags=tags, model=model,
        title=f"{key_scope or wrapped_key_id} used {model} for the first time",
        summary=f"First request of this key to {provider}/{model}.",
        details={"provider": provider},
    )


def unknown_price_alert(*, subject: str, wrapped_key_id: str, key_scope: str, tags: KeyTags,
                        model: str, at: datetime, catalog_version: str) -> AlertEvent:
    return AlertEvent(
        alert_id=AlertEvent.make_id(AlertKind.UNKNOWN_MODEL_PRICE, "", "", subject),
        kind=AlertKind.UNKNOWN_MODEL_PRICE, severity=Severity.WARNING, detected_at=at,
        wrapped_key_id=wrapped_key_id, key_scope=key_scope, tags=tags, model=model,
        title=f"No price for {subject}: its requests are stored with cost unknown",
        summary=(f"Neither genai-prices nor our overrides ({catalog_version}) price {subject}. "
                 "Add an entry to schemas/pricing/overrides.json (or upgrade genai-prices) and "
                 "run `keywarden pipeline reprice --since …` to restate the affected rows."),
        details={"subject": subject, "catalog_version": catalog_version},
    )


def orphan_alert(*, wrapped_key_id: str, key_scope: str, tags: KeyTags, idle_since: datetime,
                 idle_days: int, at: datetime) -> AlertEvent:
    period = f"idle-since:{idle_since:%Y-%m-%dT%H:%M:%S}"
    return AlertEvent(
        alert_id=AlertEvent.make_id(AlertKind.ORPHANED_KEY, wrapped_key_id, period),
        kind=AlertKind.ORPHANED_KEY, severity=Severity.INFO, detected_at=at,
        wrapped_key_id=wrapped_key_id, key_scope=key_scope, tags=tags,
        title=f"{key_scope or wrapped_key_id} has made no request for {idle_days}+ days",
        summary=f"Active key idle since {idle_since:%Y-%m-%d %H:%M} UTC: revoke it if unused.",
        period=period, metric="idle_days",
        observed=Decimal((at - idle_since).days), threshold=Decimal(idle_days),
    )


def rotation_alert(*, provider_key_id: str, provider: str, created_at: datetime,
                   rotation_days: int, age_days: Decimal, at: datetime) -> AlertEvent:
    period = f"created:{created_at:%Y-%m-%dT%H:%M:%S}"
    return AlertEvent(
        alert_id=AlertEvent.make_id(AlertKind.ROTATION_OVERDUE, "", period, provider_key_id),
        kind=AlertKind.ROTATION_OVERDUE, severity=Severity.WARNING, detected_at=at,
        provider_key_id=provider_key_id,
        title=f"Provider key {provider_key_id} ({provider}) is overdue for rotation",
        summary=f"Created {created_at:%Y-%m-%d}, {age_days} days old; "
                f"policy: {rotation_days} days.",
        period=period, metric="age_days", observed=age_days, threshold=Decimal(rotation_days),
        details={"provider": provider},
    )
