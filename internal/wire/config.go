package wire

import "encoding/json"

// ConfigScope is one layer of fleet configuration, stored in KV
// agent_config under global, groups.<g> or pcs.<pc>. Every field is
// optional; null equals absent. Durations travel as strings ("30s", "10m")
// and are validated when resolved, so a bad value is reported rather than
// breaking the whole layer.
type ConfigScope struct {
	TargetVersion       *string `json:"target_version,omitempty"`
	TargetVersionJitter *string `json:"target_version_jitter,omitempty"`
	HeartbeatInterval   *string `json:"heartbeat_interval,omitempty"`
	InventoryInterval   *string `json:"inventory_interval,omitempty"`
	InventoryJitter     *string `json:"inventory_jitter,omitempty"`
	InventoryEnabled    *bool   `json:"inventory_enabled,omitempty"`
	MaxLocalConcurrent  *int    `json:"max_local_concurrent,omitempty"`
	HostPerfInterval    *string `json:"host_perf_interval,omitempty"`
}

// EffectiveConfig is what an agent runs with after resolving every layer.
type EffectiveConfig struct {
	TargetVersion       string   `json:"target_version,omitempty"`
	TargetVersionJitter Duration `json:"target_version_jitter"`
	HeartbeatInterval   Duration `json:"heartbeat_interval"`
	InventoryInterval   Duration `json:"inventory_interval"`
	InventoryJitter     Duration `json:"inventory_jitter"`
	InventoryEnabled    bool     `json:"inventory_enabled"`
	MaxLocalConcurrent  int      `json:"max_local_concurrent"`
	HostPerfInterval    Duration `json:"host_perf_interval"`
}

// AgentGroups is the value of KV agent_groups/<pc>.
type AgentGroups struct {
	Groups []string `json:"groups"`
}

// ConfigConflict reports a field set by more than one of a PC's groups;
// the last group in alphabetical order wins.
type ConfigConflict struct {
	Field  string   `json:"field"`
	Groups []string `json:"groups"`
	Winner string   `json:"winner"`
}

// ConfigProblem reports a value that could not be used; the field falls
// back to its default.
type ConfigProblem struct {
	Layer   string          `json:"layer"`
	Field   string          `json:"field,omitempty"`
	Value   json.RawMessage `json:"value,omitempty"`
	Message string          `json:"message"`
}

// ConfigReport answers agents.<pc>.config: what the agent believes.
type ConfigReport struct {
	PCID      string          `json:"pc_id"`
	Effective EffectiveConfig `json:"effective"`
	// Sources names the layer that set each field: default, global,
	// group:<g> or pc.
	Sources   map[string]string `json:"sources"`
	Groups    []string          `json:"groups"`
	Conflicts []ConfigConflict  `json:"conflicts,omitempty"`
	Problems  []ConfigProblem   `json:"problems,omitempty"`
	// Synced is false until the agent has read its config from KV once.
	Synced bool `json:"synced"`
	// SyncError is the last failed read, cleared by the next success; the
	// agent keeps its current config meanwhile.
	SyncError string `json:"sync_error,omitempty"`
	// Revisions maps each KV key the agent applied to its revision.
	Revisions map[string]uint64 `json:"revisions,omitempty"`
}

// KV keys of agent_config.
const (
	ConfigKeyGlobal = "global"
)

// ConfigKeyGroup is the agent_config key of a group layer.
func ConfigKeyGroup(g string) string { return "groups." + g }

// ConfigKeyPC is the agent_config key of a PC layer.
func ConfigKeyPC(pc string) string { return "pcs." + pc }
