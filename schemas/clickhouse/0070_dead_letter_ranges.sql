-- A dead letter can be a whole record batch the pipeline could not decode (an unsupported or
-- corrupt compression codec, a CRC mismatch): it covers offsets source_offset..source_last_offset.
-- A single bad record has source_last_offset = source_offset.
ALTER TABLE request_dead_letters
    ADD COLUMN IF NOT EXISTS source_last_offset UInt64 DEFAULT source_offset AFTER source_offset;
