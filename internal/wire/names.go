package wire

// JetStream streams.
const (
	StreamExec      = "EXEC"
	StreamResults   = "RESULTS"
	StreamEvents    = "EVENTS"
	StreamObs       = "OBS_EVENTS"
	StreamInventory = "INVENTORY"
	StreamAudit     = "AUDIT"
)

// KV buckets. NATS forbids dots in bucket names, hence the underscores.
const (
	BucketAgentConfig   = "agent_config"
	BucketAgentGroups   = "agent_groups"
	BucketScriptCurrent = "script_current"
	BucketScriptStatus  = "script_status"
	BucketJobs          = "jobs"
	BucketSchedules     = "schedules"
	BucketFleetConfig   = "fleet_config"
)

// Object stores.
const (
	ObjectAgentReleases = "agent_releases"
	ObjectResultOutput  = "result_output"
	ObjectScripts       = "scripts"
)

// HeaderMsgID is JetStream's de-duplication header.
const HeaderMsgID = "Nats-Msg-Id"

// Script status values in the script_status bucket.
const (
	ScriptActive  = "ACTIVE"
	ScriptRevoked = "REVOKED"
)

// OutputInlineLimit is the largest stdout or stderr carried inside an
// ExecResult; above it the output goes to the result_output object store.
const OutputInlineLimit = 256 << 10
