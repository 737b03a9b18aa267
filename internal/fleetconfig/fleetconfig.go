// Package fleetconfig resolves an agent's effective configuration from the
// layers stored in KV agent_config: built-in defaults, then global, then
// each of the PC's groups in alphabetical order (last wins), then the PC's
// own layer. It is pure (no I/O) and shared by the agent and the CLI, so
// `kanade config effective` and the agent can never disagree.
//
// Reading is lenient and field by field: an unknown field is ignored, a
// value of the wrong type or that does not parse is reported and the field
// falls back to its default. Writing (Validate) is strict.
package fleetconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kanade-project/kanade/internal/wire"
)

// Kind is the type of a field's value.
type Kind string

const (
	KindDuration Kind = "duration"
	KindBool     Kind = "bool"
	KindInt      Kind = "int"
	KindVersion  Kind = "version"
)

// Field describes one configuration field.
type Field struct {
	Name string
	Kind Kind
	// Default as shown to operators ("30s", "true", "CPU count").
	Default string
	Help    string
	// Min and Max bound durations and ints (zero: unbounded).
	Min, Max time.Duration
	MinInt   int
}

// Fields lists every field, in display order.
func Fields() []Field {
	return []Field{
		{Name: "target_version", Kind: KindVersion, Default: "(unset: keep the running version)", Help: "agent version the PCs should run (self-update)"},
		{Name: "target_version_jitter", Kind: KindDuration, Default: "10m", Help: "random delay before an agent starts an update", Max: 7 * 24 * time.Hour},
		{Name: "heartbeat_interval", Kind: KindDuration, Default: "30s", Help: "how often agents send a heartbeat", Min: time.Second, Max: time.Hour},
		{Name: "inventory_interval", Kind: KindDuration, Default: "24h", Help: "how often agents collect inventory", Min: 10 * time.Second, Max: 30 * 24 * time.Hour},
		{Name: "inventory_jitter", Kind: KindDuration, Default: "10m", Help: "random delay before the first inventory run", Max: 24 * time.Hour},
		{Name: "inventory_enabled", Kind: KindBool, Default: "true", Help: "collect and publish inventory"},
		{Name: "max_local_concurrent", Kind: KindInt, Default: "CPU count", Help: "scripts an agent runs at once", MinInt: 1},
		{Name: "host_perf_interval", Kind: KindDuration, Default: "60s", Help: "how often agents send host performance samples", Min: 10 * time.Second, Max: time.Hour},
	}
}

// FieldByName returns the field called name.
func FieldByName(name string) (Field, bool) {
	for _, f := range Fields() {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

// FieldNames lists the valid field names (for error messages).
func FieldNames() []string {
	var out []string
	for _, f := range Fields() {
		out = append(out, f.Name)
	}
	return out
}

// Layer is one decoded agent_config entry: the raw JSON value of each field
// it sets (nulls dropped, unknown fields kept but never used).
type Layer struct {
	// Name is "global", "group:<g>" or "pc".
	Name   string
	Fields map[string]json.RawMessage
}

// ParseLayer decodes a KV value. It fails only when the value is not a JSON
// object at all: such an entry is ignored, never applied as empty.
func ParseLayer(name string, data []byte) (Layer, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return Layer{}, fmt.Errorf("layer %s is not a JSON object: %w", name, err)
	}
	if m == nil {
		return Layer{}, fmt.Errorf("layer %s is null", name)
	}
	l := Layer{Name: name, Fields: map[string]json.RawMessage{}}
	for k, v := range m {
		if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			continue
		}
		l.Fields[k] = v
	}
	return l, nil
}

// value is a decoded field value.
type value struct {
	str string
	d   time.Duration
	b   bool
	n   int
}

// decode parses a raw JSON value of f.
func (f Field) decode(raw json.RawMessage) (value, error) {
	var v value
	switch f.Kind {
	case KindBool:
		if err := json.Unmarshal(raw, &v.b); err != nil {
			return v, fmt.Errorf("%s must be true or false", f.Name)
		}
	case KindInt:
		// json.Number also accepts a JSON string holding a number ("4"),
		// which is the wrong type for an int field (ConfigScope has *int):
		// refuse it like any other wrong type.
		var n json.Number
		if t := bytes.TrimSpace(raw); len(t) > 0 && t[0] == '"' {
			return v, fmt.Errorf("%s must be a whole number, not a string", f.Name)
		}
		if err := json.Unmarshal(raw, &n); err != nil {
			return v, fmt.Errorf("%s must be a whole number", f.Name)
		}
		i, err := strconv.Atoi(n.String())
		if err != nil {
			return v, fmt.Errorf("%s must be a whole number, got %s", f.Name, n)
		}
		if i < f.MinInt {
			return v, fmt.Errorf("%s must be at least %d, got %d", f.Name, f.MinInt, i)
		}
		v.n = i
	case KindDuration:
		if err := json.Unmarshal(raw, &v.str); err != nil {
			return v, fmt.Errorf("%s must be a duration string like \"30s\", \"10m\" or \"24h\"", f.Name)
		}
		d, err := parseDuration(f, v.str)
		if err != nil {
			return v, err
		}
		v.d = d
	case KindVersion:
		if err := json.Unmarshal(raw, &v.str); err != nil {
			return v, fmt.Errorf("%s must be a version string", f.Name)
		}
		if err := checkVersion(v.str); err != nil {
			return v, err
		}
	}
	return v, nil
}

func parseDuration(f Field, s string) (time.Duration, error) {
	d, err := wire.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", f.Name, err)
	}
	if f.Min > 0 && d < f.Min {
		return 0, fmt.Errorf("%s must be at least %s, got %s", f.Name, f.Min, s)
	}
	if f.Max > 0 && d > f.Max {
		return 0, fmt.Errorf("%s must be at most %s, got %s", f.Name, f.Max, s)
	}
	return d, nil
}

func checkVersion(s string) error {
	if s == "" || len(s) > 64 {
		return errors.New("target_version must be 1-64 characters")
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-+_", r)) {
			return fmt.Errorf("target_version %q may contain only letters, digits and . - + _", s)
		}
	}
	// The same rule as release.CheckVersion: the agent builds its
	// staging file name from the version, so no path-like dots.
	if strings.HasPrefix(s, ".") || strings.Contains(s, "..") {
		return fmt.Errorf("target_version %q must not start with '.' or contain \"..\"", s)
	}
	return nil
}

// Validate checks an operator's "field=value" input strictly and returns
// the JSON value to store. The error lists the valid fields and formats.
func Validate(name, input string) (json.RawMessage, error) {
	f, ok := FieldByName(name)
	if !ok {
		return nil, fmt.Errorf("unknown field %q\n%s", name, Usage())
	}
	var raw json.RawMessage
	switch f.Kind {
	case KindBool:
		b, err := strconv.ParseBool(input)
		if err != nil {
			return nil, fmt.Errorf("%s must be true or false, got %q", name, input)
		}
		raw, _ = json.Marshal(b)
	case KindInt:
		n, err := strconv.Atoi(input)
		if err != nil {
			return nil, fmt.Errorf("%s must be a whole number, got %q", name, input)
		}
		raw, _ = json.Marshal(n)
	default:
		raw, _ = json.Marshal(input)
	}
	if _, err := f.decode(raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// Usage describes every field with its format and default.
func Usage() string {
	var b strings.Builder
	b.WriteString("valid fields:\n")
	for _, f := range Fields() {
		format := string(f.Kind)
		switch f.Kind {
		case KindDuration:
			format = "duration (30s, 10m, 24h, 7d)"
		case KindBool:
			format = "true|false"
		case KindInt:
			format = fmt.Sprintf("integer ≥ %d", f.MinInt)
		case KindVersion:
			format = "version (letters, digits, . - + _)"
		}
		fmt.Fprintf(&b, "  %-22s %-36s default %s — %s\n", f.Name, format, f.Default, f.Help)
	}
	return b.String()
}

// Resolution is the outcome of Resolve.
type Resolution struct {
	Effective wire.EffectiveConfig
	// Sources maps each field to the layer that set it ("default",
	// "global", "group:<g>", "pc").
	Sources   map[string]string
	Conflicts []wire.ConfigConflict
	Problems  []wire.ConfigProblem
}

// Defaults are the built-in values; MaxLocalConcurrent depends on the host.
func Defaults(numCPU int) wire.EffectiveConfig {
	return wire.EffectiveConfig{
		TargetVersionJitter: wire.Duration(10 * time.Minute),
		HeartbeatInterval:   wire.Duration(30 * time.Second),
		InventoryInterval:   wire.Duration(24 * time.Hour),
		InventoryJitter:     wire.Duration(10 * time.Minute),
		InventoryEnabled:    true,
		MaxLocalConcurrent:  max(numCPU, 1),
		HostPerfInterval:    wire.Duration(time.Minute),
	}
}

// Resolve applies global, then groups (sorted by name here, whatever the
// order given), then pc over the defaults. Nil layers are absent.
func Resolve(defaults wire.EffectiveConfig, global *Layer, groups []Layer, pc *Layer) Resolution {
	res := Resolution{Effective: defaults, Sources: map[string]string{}}
	groups = slices.Clone(groups)
	slices.SortFunc(groups, func(a, b Layer) int { return strings.Compare(a.Name, b.Name) })
	var order []*Layer
	if global != nil {
		order = append(order, global)
	}
	for i := range groups {
		order = append(order, &groups[i])
	}
	if pc != nil {
		order = append(order, pc)
	}
	for _, f := range Fields() {
		res.Sources[f.Name] = "default"
		var setBy []string
		for _, l := range order {
			raw, ok := l.Fields[f.Name]
			if !ok {
				continue
			}
			if strings.HasPrefix(l.Name, "group:") {
				setBy = append(setBy, strings.TrimPrefix(l.Name, "group:"))
			}
			v, err := f.decode(raw)
			if err != nil {
				res.Problems = append(res.Problems, wire.ConfigProblem{Layer: l.Name, Field: f.Name, Value: raw, Message: err.Error() + "; using the default"})
				set(&res.Effective, f, defaults)
				res.Sources[f.Name] = "default"
				continue
			}
			apply(&res.Effective, f, v)
			res.Sources[f.Name] = l.Name
		}
		if len(setBy) > 1 {
			res.Conflicts = append(res.Conflicts, wire.ConfigConflict{Field: f.Name, Groups: setBy, Winner: setBy[len(setBy)-1]})
		}
	}
	return res
}

func apply(e *wire.EffectiveConfig, f Field, v value) {
	switch f.Name {
	case "target_version":
		e.TargetVersion = v.str
	case "target_version_jitter":
		e.TargetVersionJitter = wire.Duration(v.d)
	case "heartbeat_interval":
		e.HeartbeatInterval = wire.Duration(v.d)
	case "inventory_interval":
		e.InventoryInterval = wire.Duration(v.d)
	case "inventory_jitter":
		e.InventoryJitter = wire.Duration(v.d)
	case "inventory_enabled":
		e.InventoryEnabled = v.b
	case "max_local_concurrent":
		e.MaxLocalConcurrent = v.n
	case "host_perf_interval":
		e.HostPerfInterval = wire.Duration(v.d)
	}
}

// set copies field f from src.
func set(e *wire.EffectiveConfig, f Field, src wire.EffectiveConfig) {
	switch f.Name {
	case "target_version":
		e.TargetVersion = src.TargetVersion
	case "target_version_jitter":
		e.TargetVersionJitter = src.TargetVersionJitter
	case "heartbeat_interval":
		e.HeartbeatInterval = src.HeartbeatInterval
	case "inventory_interval":
		e.InventoryInterval = src.InventoryInterval
	case "inventory_jitter":
		e.InventoryJitter = src.InventoryJitter
	case "inventory_enabled":
		e.InventoryEnabled = src.InventoryEnabled
	case "max_local_concurrent":
		e.MaxLocalConcurrent = src.MaxLocalConcurrent
	case "host_perf_interval":
		e.HostPerfInterval = src.HostPerfInterval
	}
}

// ParseGroups decodes agent_groups/<pc>: sorted, de-duplicated, and only
// names usable in a subject; the rest are reported.
func ParseGroups(data []byte) ([]string, []string, error) {
	var g wire.AgentGroups
	if err := json.Unmarshal(data, &g); err != nil {
		return nil, nil, fmt.Errorf("agent_groups value is not {\"groups\": [...]}: %w", err)
	}
	return NormalizeGroups(g.Groups)
}

// NormalizeGroups sorts, de-duplicates and validates group names; it
// returns the valid ones and a message per invalid one.
func NormalizeGroups(in []string) ([]string, []string, error) {
	var out, bad []string
	for _, g := range in {
		g = strings.TrimSpace(g)
		if err := CheckKeyToken("group", g); err != nil {
			bad = append(bad, err.Error())
			continue
		}
		out = append(out, g)
	}
	slices.Sort(out)
	return slices.Compact(out), bad, nil
}

// CheckKeyToken checks that s can be both one NATS subject token and part of
// a KV key (groups.<g>, pcs.<pc>): letters, digits, '-', '_' and '='.
func CheckKeyToken(what, s string) error {
	if s == "" || len(s) > 128 {
		return fmt.Errorf("%s %q must be 1-128 characters", what, s)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '=') {
			return fmt.Errorf("%s %q may contain only letters, digits, '-', '_' and '=' (it is used in NATS subjects and KV keys)", what, s)
		}
	}
	return nil
}
