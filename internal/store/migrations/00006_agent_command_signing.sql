-- agents.command_signing and agents.command_key_fingerprints: whether the
-- endpoint enforces signed commands and with which keys, from the
-- heartbeat's fields of the same names (wire.Heartbeat).
--   command_signing          off, enforced, no_keys or fail_closed, as the
--                            agent reports it; '' from an agent too old to
--                            report it (and for rows stored before this
--                            migration, until the PC's next heartbeat)
--   command_key_fingerprints a JSON array of the key ids the agent trusts,
--                            '[]' when none (or not reported)
-- Both are rewritten by every heartbeat, like the other agent columns.
-- No index: the API's command_signing filter scans at most the agents table
-- (a few milliseconds at 10,000 agents), and an index would be rewritten by
-- every heartbeat flush.

-- +goose Up
ALTER TABLE agents ADD COLUMN command_signing TEXT NOT NULL DEFAULT '';
ALTER TABLE agents ADD COLUMN command_key_fingerprints TEXT NOT NULL DEFAULT '[]';

-- +goose Down
ALTER TABLE agents DROP COLUMN command_key_fingerprints;
ALTER TABLE agents DROP COLUMN command_signing;
