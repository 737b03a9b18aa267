-- results.timed_out: 1 when the result is a timeout — store.Classify says
-- timed_out (exit -1 from an agent that set timed_out in its result); its
-- outcome stays killed, as exec_counters count it. The API returns it so
-- that nobody has to guess a timeout from stderr.
--
-- Rows stored before this migration get 0: the flag was not kept, and
-- cannot be recovered from the row. A database rebuilt from the streams
-- (delete it and restart) sets it for the results RESULTS still holds.

-- +goose Up
ALTER TABLE results ADD COLUMN timed_out INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE results DROP COLUMN timed_out;
