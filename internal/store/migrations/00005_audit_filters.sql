-- GET /api/audit filters by action, target and actor (exact match), newest
-- first by seq (store.ListAudit). Without an index each filter scans the
-- audit table from its newest row back until it has a page — the whole of
-- it (a year by default) for an action or target that is rare or absent,
-- which is exactly the dashboard's "who ran this execution" question
-- (action=run&target=<exec_id>&limit=1). seq is the rowid, so each of these
-- indexes is ordered by (column, seq) and serves ORDER BY seq DESC within
-- one value directly. Audit rows are written once per API mutation: the
-- three extra index entries cost nothing that matters.

-- +goose Up
CREATE INDEX audit_action ON audit (action);
CREATE INDEX audit_target ON audit (target);
CREATE INDEX audit_actor ON audit (actor);

-- +goose Down
DROP INDEX audit_actor;
DROP INDEX audit_target;
DROP INDEX audit_action;
