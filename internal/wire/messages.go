package wire

import (
	"encoding/json"
	"time"
)

// Shells a Command may name. An empty Shell means the agent's platform
// default (powershell on Windows, sh elsewhere) so one broadcast serves a
// mixed fleet.
const (
	ShellPowerShell = "powershell"
	ShellPwsh       = "pwsh"
	ShellCmd        = "cmd"
	ShellSh         = "sh"
	ShellBash       = "bash"
)

// Staleness modes of a Command.
const (
	StalenessCached    = "cached"
	StalenessStrict    = "strict"
	StalenessUnchecked = "unchecked"
)

// AdhocJobID is the job id of a command that is not from the job catalog.
const AdhocJobID = "adhoc-run"

// Staleness tells the agent how fresh its cached KV view (version pins,
// revocations) must be before it runs the command.
type Staleness struct {
	Mode        string   `json:"mode,omitempty"`
	MaxCacheAge Duration `json:"max_cache_age,omitempty"`
}

// Retry asks the agent to rerun a failed attempt (non-zero exit or timeout;
// never a kill). Only the final attempt is published.
type Retry struct {
	Max         int `json:"max,omitempty"`
	BackoffSecs int `json:"backoff_secs,omitempty"`
}

// Command is what operators and the backend publish on commands.*.
type Command struct {
	ID          string     `json:"id"`
	Version     string     `json:"version,omitempty"`
	RequestID   string     `json:"request_id"`
	ExecID      string     `json:"exec_id"`
	Shell       string     `json:"shell,omitempty"`
	Script      string     `json:"script"`
	TimeoutSecs int        `json:"timeout_secs,omitempty"`
	JitterSecs  int        `json:"jitter_secs,omitempty"`
	DeadlineAt  *time.Time `json:"deadline_at,omitempty"`
	Staleness   *Staleness `json:"staleness,omitempty"`
	Cwd         string     `json:"cwd,omitempty"`
	RunAs       string     `json:"run_as,omitempty"`
	Retry       *Retry     `json:"retry,omitempty"`
}

// UnmarshalJSON accepts job_id as an alias of exec_id (the reference
// system's older name); exec_id wins when both are present.
func (c *Command) UnmarshalJSON(b []byte) error {
	type plain Command
	var aux struct {
		plain
		JobID string `json:"job_id"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*c = Command(aux.plain)
	if c.ExecID == "" {
		c.ExecID = aux.JobID
	}
	return nil
}

// ExecResult is what an agent publishes on results.<request_id>.
type ExecResult struct {
	ResultID     string    `json:"result_id"`
	RequestID    string    `json:"request_id"`
	ExecID       string    `json:"exec_id"`
	JobID        string    `json:"job_id,omitempty"`
	Version      string    `json:"version,omitempty"`
	PCID         string    `json:"pc_id"`
	ExitCode     int       `json:"exit_code"`
	Skipped      bool      `json:"skipped,omitempty"`
	Stdout       string    `json:"stdout,omitempty"`
	Stderr       string    `json:"stderr,omitempty"`
	StdoutObject string    `json:"stdout_object,omitempty"`
	StderrObject string    `json:"stderr_object,omitempty"`
	StartedAt    time.Time `json:"started_at,omitzero"`
	FinishedAt   time.Time `json:"finished_at,omitzero"`
	ManifestID   string    `json:"manifest_id,omitempty"`
	Attempts     int       `json:"attempts,omitempty"`
	// TimedOut marks an ExitKilled result whose run hit its timeout_secs
	// rather than being killed, so that the backend counts timeouts apart
	// (store.Classify). Older agents report a timeout as a plain kill.
	TimedOut bool `json:"timed_out,omitempty"`
}

// EventStarted is published on events.started.<exec_id>.<pc> just before
// the script is spawned.
type EventStarted struct {
	ResultID  string    `json:"result_id"`
	RequestID string    `json:"request_id"`
	ExecID    string    `json:"exec_id"`
	JobID     string    `json:"job_id,omitempty"`
	PCID      string    `json:"pc_id"`
	StartedAt time.Time `json:"started_at"`
}

// Heartbeat is published on heartbeat.<pc> and answers pings.
type Heartbeat struct {
	PCID          string    `json:"pc_id"`
	At            time.Time `json:"at"`
	AgentVersion  string    `json:"agent_version"`
	Hostname      string    `json:"hostname,omitempty"`
	OSFamily      string    `json:"os_family,omitempty"`
	Arch          string    `json:"arch,omitempty"`
	MachineID     string    `json:"machine_id,omitempty"`
	AgentRSSBytes uint64    `json:"agent_rss_bytes,omitempty"`
	// AgentCPUPct is nil on the first tick: a percentage needs two samples.
	AgentCPUPct         *float64 `json:"agent_cpu_pct"`
	OutboxDepth         int      `json:"outbox_depth"`
	QuarantinedVersions []string `json:"quarantined_versions,omitempty"`
	// HeartbeatIntervalSecs is the agent's current cadence, so the backend
	// judges "offline after 3 intervals" by the interval this PC uses.
	HeartbeatIntervalSecs int      `json:"heartbeat_interval_secs,omitempty"`
	Groups                []string `json:"groups,omitempty"`
	// CommandKeyFingerprints are the ids of the command keys the agent
	// trusts. Always sent, [] when none, so "trusts no key" is told apart
	// from an agent too old to report it.
	CommandKeyFingerprints KeyIDs `json:"command_key_fingerprints"`
	// CommandSigning is whether the agent enforces signed commands: one
	// of the CommandSigning* values.
	CommandSigning string `json:"command_signing,omitempty"`
}

// KeyIDs is a list of key ids that encodes as [] rather than null when
// empty.
type KeyIDs []string

// MarshalJSON encodes a nil list as [].
func (k KeyIDs) MarshalJSON() ([]byte, error) {
	if k == nil {
		return []byte("[]"), nil
	}
	return json.Marshal([]string(k))
}

// Values of Heartbeat.CommandSigning.
const (
	// CommandSigningOff: require_signed_commands is off; every command
	// runs, signed or not.
	CommandSigningOff = "off"
	// CommandSigningEnforced: only commands signed by a trusted key run.
	CommandSigningEnforced = "enforced"
	// CommandSigningNoKeys: the switch is on but the key ring is empty, so
	// nothing is enforced (the agent warns).
	CommandSigningNoKeys = "no_keys"
	// CommandSigningFailClosed: the switch is on but the key ring could
	// not be read; every command is refused until it can.
	CommandSigningFailClosed = "fail_closed"
)

// ObsEvent is a timeline event published on obs.<pc>.
type ObsEvent struct {
	PCID          string          `json:"pc_id"`
	At            time.Time       `json:"at"`
	Kind          string          `json:"kind"`
	Source        string          `json:"source"`
	EventRecordID string          `json:"event_record_id"`
	Payload       json.RawMessage `json:"payload,omitempty"`
}

// Well-known ObsEvent kinds.
const (
	ObsAgentOnline = "agent_online"
	ObsAgentUpdate = "agent_update"
	// ObsCommandVerification reports a change of the agent's signed-command
	// verification state (refusing for a reason, or verifying again).
	ObsCommandVerification = "command_verification"
	// ObsCommandKeys reports a command key ring that could not be (re)loaded.
	ObsCommandKeys = "command_keys"
)
