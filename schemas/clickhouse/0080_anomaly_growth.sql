-- A ramping key's spike is judged against its highest history window times how far its newest
-- history day grew over the day before it (pipelines/detect/spike.py `recent_growth`, 1 to 2):
-- that scale, 1 for every other centre and for rows written before it existed.
ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS growth Decimal(38, 9) DEFAULT 1;
