-- executions: one row per execution for the newest-first list
-- (GET /api/executions, store.ListExecutions). exec_counters has no time
-- and no job, and computing them per request would mean aggregating every
-- result of every execution before sorting; this table keeps them, indexed.
--
-- What results bring (job, times) is folded in by the store's write
-- transaction at commit, once per execution like exec_counters (Tx.UpsertResult,
-- executions.go): a trigger doing it per row cost a third of the results
-- ingest rate. started rows and the running count are kept by the triggers
-- below, which see each row change as it happens — running must be decided
-- at the moment a started row or a result is inserted or deleted.
--
-- Every column is a commutative fold of the rows of results and started, so
-- the projectors of RESULTS and EVENTS may apply their messages in any
-- interleaving and a database rebuilt from the streams holds the same rows:
--   job_id         the smallest non-empty job_id of the execution's results
--                  and started events ('' while none is known)
--   first_seen_at  the earliest started_at / finished_at seen, in Unix ms of
--                  the agents' clocks (0: unknown; only after a backfill of
--                  an execution whose results were trimmed)
--   last_result_at the latest finished_at of a result (NULL: none yet)
--   running        started rows of the execution with no result of the same
--                  result_id: exactly what ExecutionCounters computes, kept
--                  up to date on every insert and delete of either table
-- Like exec_counters, rows are never trimmed: retention deleting results or
-- started rows only adjusts running.

-- +goose Up

-- The started event carries the job id; keep it so that an execution with
-- no result yet can show its job.
ALTER TABLE started ADD COLUMN job_id TEXT NOT NULL DEFAULT '';

CREATE TABLE executions (
    exec_id        TEXT    NOT NULL PRIMARY KEY,
    job_id         TEXT    NOT NULL DEFAULT '',
    first_seen_at  INTEGER NOT NULL DEFAULT 0,
    last_result_at INTEGER,
    running        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX executions_first_seen ON executions (first_seen_at, exec_id);

-- Existing databases: fold what results, started and exec_counters hold.
INSERT INTO executions (exec_id, job_id, first_seen_at, last_result_at, running)
SELECT exec_id, coalesce(min(nullif(job_id, '')), ''), coalesce(min(nullif(first, 0)), 0),
       max(nullif(last, 0)), sum(running)
FROM (
    SELECT exec_id, job_id,
           coalesce(min(nullif(started_at, 0), nullif(finished_at, 0)), nullif(started_at, 0), finished_at) AS first,
           finished_at AS last, 0 AS running
    FROM results
    UNION ALL
    SELECT exec_id, job_id, started_at, NULL,
           NOT EXISTS (SELECT 1 FROM results r WHERE r.result_id = started.result_id)
    FROM started
    UNION ALL
    SELECT exec_id, '', 0, NULL, 0 FROM exec_counters
)
GROUP BY exec_id;

-- A new result ends the running state of its started row. The started
-- row's insert made the executions row, so the UPDATE always finds it.
-- +goose StatementBegin
CREATE TRIGGER executions_result_insert AFTER INSERT ON results
WHEN EXISTS (SELECT 1 FROM started WHERE result_id = NEW.result_id) BEGIN
    UPDATE executions SET running = running - 1
    WHERE exec_id = (SELECT exec_id FROM started WHERE result_id = NEW.result_id);
END;
-- +goose StatementEnd

-- A result trimmed by retention while its started row remains makes that
-- PC count as running again, as ExecutionCounters would say.
-- +goose StatementBegin
CREATE TRIGGER executions_result_delete AFTER DELETE ON results BEGIN
    UPDATE executions SET running = running + 1
    WHERE exec_id = (SELECT exec_id FROM started WHERE result_id = OLD.result_id);
END;
-- +goose StatementEnd

-- A started event folds its job and time in, and runs until its result.
-- +goose StatementBegin
CREATE TRIGGER executions_started_insert AFTER INSERT ON started BEGIN
    INSERT INTO executions (exec_id, job_id, first_seen_at, running)
    VALUES (NEW.exec_id, NEW.job_id, NEW.started_at,
            NOT EXISTS (SELECT 1 FROM results WHERE result_id = NEW.result_id))
    ON CONFLICT (exec_id) DO UPDATE SET
        job_id = CASE WHEN executions.job_id = '' THEN excluded.job_id
                      WHEN excluded.job_id = '' THEN executions.job_id
                      ELSE min(executions.job_id, excluded.job_id) END,
        first_seen_at = coalesce(min(nullif(executions.first_seen_at, 0), nullif(excluded.first_seen_at, 0)),
                                 nullif(executions.first_seen_at, 0), excluded.first_seen_at),
        running = executions.running + excluded.running;
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER executions_started_delete AFTER DELETE ON started
WHEN NOT EXISTS (SELECT 1 FROM results WHERE result_id = OLD.result_id) BEGIN
    UPDATE executions SET running = running - 1 WHERE exec_id = OLD.exec_id;
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER executions_started_delete;
DROP TRIGGER executions_started_insert;
DROP TRIGGER executions_result_delete;
DROP TRIGGER executions_result_insert;
DROP TABLE executions;
ALTER TABLE started DROP COLUMN job_id;
