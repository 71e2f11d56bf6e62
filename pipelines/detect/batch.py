"""What one analytics batch runs with and what it produces: the rules' thresholds
(`DetectConfig`, from the settings) and the batch's alerts, anomalies, baselines and spend
(`BatchOutput`). Shared by the agent glue (`agents.py`) and the spike watch (`spike_watch.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from keywarden.settings import Settings
from pipelines.detect.spike import BASELINE_MODES
from schemas.events.alert import AlertEvent
from schemas.events.spend import SpendEvent


@dataclass(frozen=True)
class DetectConfig:
    allowed_lateness: timedelta = timedelta(hours=1)
    spike_factor: Decimal = Decimal(2)
    min_requests_hour: int = 10
    min_requests_day: int = 500
    cooldown: timedelta = timedelta(hours=6)
    min_history_days: int = 7
    budget_thresholds: tuple[int, ...] = (50, 80, 100)
    first_use_grace: timedelta = timedelta(hours=1)
    baseline_mode: str = "seasonal"
    significance: float = 0.00001
    windows_minutes: tuple[int, ...] = (15, 60, 180)
    lookback_days: int = 28

    def __post_init__(self) -> None:
        if self.baseline_mode not in BASELINE_MODES:
            raise ValueError(f"baseline mode must be one of {BASELINE_MODES}, "
                             f"got {self.baseline_mode!r}")
        if not self.windows_minutes or any(m <= 0 or m % 5 for m in self.windows_minutes):
            raise ValueError(f"spike windows must be positive multiples of 5 minutes, "
                             f"got {self.windows_minutes}")

    @classmethod
    def from_settings(cls, settings: Settings) -> DetectConfig:
        return cls(
            baseline_mode=settings.analytics_spike_baseline,
            significance=settings.analytics_spike_significance,
            windows_minutes=settings.spike_windows_minutes,
            lookback_days=min(28, settings.analytics_state_retention_days - 2),
            allowed_lateness=timedelta(seconds=settings.analytics_allowed_lateness_seconds),
            spike_factor=Decimal(str(settings.analytics_spike_factor)),
            min_requests_hour=settings.analytics_spike_min_requests_hour,
            min_requests_day=settings.analytics_spike_min_requests_day,
            cooldown=timedelta(seconds=settings.analytics_spike_cooldown_seconds),
            min_history_days=settings.analytics_spike_min_history_days,
            budget_thresholds=settings.budget_thresholds,
            first_use_grace=timedelta(seconds=settings.analytics_first_use_grace_seconds),
        )


@dataclass
class BatchOutput:
    alerts: list[AlertEvent] = field(default_factory=list)
    anomalies: list[tuple[Any, ...]] = field(default_factory=list)
    baselines: list[tuple[Any, ...]] = field(default_factory=list)
    spend: list[SpendEvent] = field(default_factory=list)
