-- What each spike was compared with (pipelines/detect/spike.py): the baseline mode (seasonal:
-- the same clock-time window on past days; flat: the 7-day average), the window's length, the
-- kind of day (weekday | weekend | day), the centre (median | second-highest | highest | mean),
-- the history values of the metric (one per history day, newest first; empty in flat mode) and
-- the p-value of the request count under Poisson noise (NULL in flat mode).
ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS baseline_mode LowCardinality(String) DEFAULT 'flat';
ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS window_minutes UInt16 DEFAULT 60;
ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS day_kind LowCardinality(String) DEFAULT '';
ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS centre LowCardinality(String) DEFAULT '';
ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS history Array(Decimal(38, 9));
ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS p_value Nullable(Float64);
