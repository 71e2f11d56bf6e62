"""Prometheus metrics in the plain-text exposition format, without a client library: counters
and histograms with labels, rendered by `GatewayMetrics.render()` for `/metrics`.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

LabelKey = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "")


def _labels(key: LabelKey, extra: tuple[str, str] | None = None) -> str:
    pairs = list(key) + ([extra] if extra else [])
    if not pairs:
        return ""
    escaped = (f'{name}="{_escape(value)}"' for name, value in pairs)
    return "{" + ",".join(escaped) + "}"


class Counter:
    def __init__(self, name: str, help_: str) -> None:
        self.name, self.help = name, help_
        self._values: dict[LabelKey, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        lines += [f"{self.name}{_labels(k)} {v:g}" for k, v in sorted(self._values.items())]
        return lines


class Gauge(Counter):
    def set(self, value: float, **labels: str) -> None:
        self._values[tuple(sorted(labels.items()))] = value

    def render(self) -> list[str]:
        return [
            line.replace(" counter", " gauge") if line.startswith("# TYPE") else line
            for line in super().render()
        ]


class Histogram:
    def __init__(self, name: str, help_: str, buckets: Sequence[float]) -> None:
        self.name, self.help = name, help_
        self.buckets = tuple(sorted(buckets))
        self._series: dict[LabelKey, tuple[list[int], list[float]]] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        counts, totals = self._series.setdefault(key, ([0] * (len(self.buckets) + 1), [0.0]))
        counts[bisect.bisect_left(self.buckets, value)] += 1
        totals[0] += value

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for key, (counts, totals) in sorted(self._series.items()):
            running = 0
            for bound, count in zip(self.buckets, counts, strict=False):
                running += count
                lines.append(f"{self.name}_bucket{_labels(key, ('le', f'{bound:g}'))} {running}")
            running += counts[-1]
            lines.append(f"{self.name}_bucket{_labels(key, ('le', '+Inf'))} {running}")
            lines.append(f"{self.name}_sum{_labels(key)} {totals[0]:g}")
            lines.append(f"{self.name}_count{_labels(key)} {running}")
        return lines


LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class GatewayMetrics:
    """Every metric the gateway exports."""

    def __init__(self) -> None:
        self.requests = Counter(
            "keywarden_gateway_requests_total", "Requests by provider, endpoint and outcome."
        )
        self.refusals = Counter("keywarden_gateway_refusals_total", "Refused requests by reason.")
        self.upstream_latency = Histogram(
            "keywarden_gateway_upstream_latency_seconds",
            "Time from forwarding to the end of the provider's answer.",
            LATENCY_BUCKETS,
        )
        self.events_published = Counter(
            "keywarden_gateway_events_published_total", "Request events sent to Kafka."
        )
        self.events_spooled = Counter(
            "keywarden_gateway_events_spooled_total", "Request events written to the local spool."
        )
        self.publish_failures = Counter(
            "keywarden_gateway_publish_failures_total", "Failed attempts to send to Kafka."
        )
        self.spool_backlog = Gauge(
            "keywarden_gateway_spool_backlog_events", "Events in the spool not yet sent."
        )
        self.registry_ready = Gauge(
            "keywarden_gateway_registry_ready", "1 once the key registry is loaded."
        )

    def render(self) -> str:
        lines: list[str] = []
        for metric in (
            self.requests,
            self.refusals,
            self.upstream_latency,
            self.events_published,
            self.events_spooled,
            self.publish_failures,
            self.spool_backlog,
            self.registry_ready,
        ):
            lines += metric.render()
        return "\n".join(lines) + "\n"


__all__ = ["Counter", "GatewayMetrics", "Gauge", "Histogram"]
