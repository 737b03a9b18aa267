-- The backend's SQLite projection of the JetStream streams (DESIGN.md §4).
-- Every time is an INTEGER of Unix milliseconds (UTC); NULL means unknown.
-- JSON columns hold TEXT produced by encoding/json.

-- +goose Up

-- agents: one row per PC, from core heartbeats (not a stream, so a rebuilt
-- database refills from the next heartbeats). last_seen is the backend's
-- receive time of the newest heartbeat; reported_at is the agent's own clock.
-- A PC is online while last_seen + 3 * heartbeat_interval_secs is in the
-- future; the expression index below serves that filter.
CREATE TABLE agents (
    pc_id                   TEXT    NOT NULL PRIMARY KEY,
    hostname                TEXT    NOT NULL DEFAULT '',
    os_family               TEXT    NOT NULL DEFAULT '',
    arch                    TEXT    NOT NULL DEFAULT '',
    agent_version           TEXT    NOT NULL DEFAULT '',
    machine_id              TEXT    NOT NULL DEFAULT '',
    groups                  TEXT    NOT NULL DEFAULT '[]',
    quarantined_versions    TEXT    NOT NULL DEFAULT '[]',
    rss_bytes               INTEGER NOT NULL DEFAULT 0,
    cpu_pct                 REAL,
    outbox_depth            INTEGER NOT NULL DEFAULT 0,
    reported_at             INTEGER,
    first_seen              INTEGER NOT NULL,
    last_seen               INTEGER NOT NULL,
    online_since            INTEGER NOT NULL,
    heartbeat_interval_secs INTEGER NOT NULL DEFAULT 30
);
CREATE INDEX agents_offline_at ON agents (last_seen + 3000 * heartbeat_interval_secs);
CREATE INDEX agents_hostname ON agents (hostname, pc_id);
CREATE INDEX agents_last_seen ON agents (last_seen, pc_id);
CREATE INDEX agents_version ON agents (agent_version, pc_id);
CREATE INDEX agents_os ON agents (os_family, pc_id);

-- results: RESULTS, upserted by result_id. outcome is derived from
-- exit_code and skipped (succeeded, failed, skipped, killed).
CREATE TABLE results (
    result_id     TEXT    NOT NULL PRIMARY KEY,
    request_id    TEXT    NOT NULL DEFAULT '',
    exec_id       TEXT    NOT NULL,
    job_id        TEXT    NOT NULL DEFAULT '',
    version       TEXT    NOT NULL DEFAULT '',
    manifest_id   TEXT    NOT NULL DEFAULT '',
    pc_id         TEXT    NOT NULL,
    exit_code     INTEGER NOT NULL,
    skipped       INTEGER NOT NULL DEFAULT 0,
    outcome       TEXT    NOT NULL,
    stdout        TEXT    NOT NULL DEFAULT '',
    stderr        TEXT    NOT NULL DEFAULT '',
    stdout_object TEXT    NOT NULL DEFAULT '',
    stderr_object TEXT    NOT NULL DEFAULT '',
    started_at    INTEGER,
    finished_at   INTEGER NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    stream_seq    INTEGER NOT NULL
);
CREATE INDEX results_exec ON results (exec_id, finished_at);
CREATE INDEX results_pc ON results (pc_id, finished_at);
CREATE INDEX results_finished ON results (finished_at);

-- started: EVENTS (events.started.<exec_id>.<pc>). Rows stay after the
-- result arrives: a PC is running while it has a started row and no result,
-- whichever of the two the projector saw first.
CREATE TABLE started (
    result_id  TEXT    NOT NULL PRIMARY KEY,
    request_id TEXT    NOT NULL DEFAULT '',
    exec_id    TEXT    NOT NULL,
    pc_id      TEXT    NOT NULL,
    started_at INTEGER NOT NULL
);
CREATE INDEX started_exec ON started (exec_id);
CREATE INDEX started_started_at ON started (started_at);

-- exec_counters: per-execution totals, maintained with each result upsert
-- (a result_id already known is never counted twice).
CREATE TABLE exec_counters (
    exec_id   TEXT    NOT NULL PRIMARY KEY,
    results   INTEGER NOT NULL DEFAULT 0,
    succeeded INTEGER NOT NULL DEFAULT 0,
    failed    INTEGER NOT NULL DEFAULT 0,
    skipped   INTEGER NOT NULL DEFAULT 0,
    killed    INTEGER NOT NULL DEFAULT 0
);

-- timeline: OBS_EVENTS; the first event with a given
-- (pc_id, source, event_record_id) wins.
CREATE TABLE timeline (
    id              INTEGER PRIMARY KEY,
    pc_id           TEXT    NOT NULL,
    source          TEXT    NOT NULL,
    event_record_id TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    at              INTEGER NOT NULL,
    payload         TEXT,
    stream_seq      INTEGER NOT NULL,
    UNIQUE (pc_id, source, event_record_id)
);
CREATE INDEX timeline_pc_at ON timeline (pc_id, at);
CREATE INDEX timeline_kind_at ON timeline (kind, at);
CREATE INDEX timeline_at ON timeline (at);

-- inventory_latest: the newest full section per PC; an "unchanged" marker
-- with the same hash only advances confirmed_at.
CREATE TABLE inventory_latest (
    pc_id        TEXT    NOT NULL,
    section      TEXT    NOT NULL,
    hash         TEXT    NOT NULL,
    collected_at INTEGER NOT NULL,
    confirmed_at INTEGER NOT NULL,
    data         TEXT    NOT NULL,
    PRIMARY KEY (pc_id, section)
);

-- inventory_history: one row per change of a section's hash.
CREATE TABLE inventory_history (
    id           INTEGER PRIMARY KEY,
    pc_id        TEXT    NOT NULL,
    section      TEXT    NOT NULL,
    hash         TEXT    NOT NULL,
    collected_at INTEGER NOT NULL,
    UNIQUE (pc_id, section, collected_at, hash)
);
CREATE INDEX inventory_history_collected ON inventory_history (collected_at);

-- audit: AUDIT, keyed by the stream sequence.
CREATE TABLE audit (
    seq     INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    actor   TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    target  TEXT    NOT NULL DEFAULT '',
    payload TEXT
);
CREATE INDEX audit_at ON audit (at);

-- meta: small facts about the projection itself (for example which
-- projector consumers were reset for a replay into this database).
CREATE TABLE meta (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
);

-- +goose Down
DROP TABLE meta;
DROP TABLE audit;
DROP TABLE inventory_history;
DROP TABLE inventory_latest;
DROP TABLE timeline;
DROP TABLE exec_counters;
DROP TABLE started;
DROP TABLE results;
DROP TABLE agents;
