package fleetconfig_test

import (
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/fleetconfig"
	"github.com/kanade-project/kanade/internal/wire"
)

// layer parses a layer that must be a JSON object.
func layer(t testing.TB, name, data string) *fleetconfig.Layer {
	t.Helper()
	l, err := fleetconfig.ParseLayer(name, []byte(data))
	if err != nil {
		t.Fatalf("ParseLayer(%s, %s): %v", name, data, err)
	}
	return &l
}

// groupLayers parses group layers given as name → JSON, in the given order.
func groupLayers(t testing.TB, groups [][2]string) []fleetconfig.Layer {
	t.Helper()
	var out []fleetconfig.Layer
	for _, g := range groups {
		out = append(out, *layer(t, "group:"+g[0], g[1]))
	}
	return out
}

// input is the layers of one resolution; "" means the layer is absent.
type input struct {
	global string
	groups [][2]string
	pc     string
}

func (in input) resolve(t testing.TB, cpus int) fleetconfig.Resolution {
	t.Helper()
	var global, pc *fleetconfig.Layer
	if in.global != "" {
		global = layer(t, "global", in.global)
	}
	if in.pc != "" {
		pc = layer(t, "pc", in.pc)
	}
	return fleetconfig.Resolve(fleetconfig.Defaults(cpus), global, groupLayers(t, in.groups), pc)
}

func TestResolvePrecedence(t *testing.T) {
	tests := []struct {
		name       string
		in         input
		wantHB     time.Duration
		wantSource string
	}{
		{"default only", input{}, 30 * time.Second, "default"},
		{"global", input{global: `{"heartbeat_interval":"1m"}`}, time.Minute, "global"},
		{"group over global", input{global: `{"heartbeat_interval":"1m"}`, groups: [][2]string{{"a", `{"heartbeat_interval":"2m"}`}}}, 2 * time.Minute, "group:a"},
		{"group that does not set the field leaves global", input{global: `{"heartbeat_interval":"1m"}`, groups: [][2]string{{"a", `{"inventory_enabled":false}`}}}, time.Minute, "global"},
		{"two groups: alphabetical last wins (given in order)", input{groups: [][2]string{{"a", `{"heartbeat_interval":"2m"}`}, {"b", `{"heartbeat_interval":"3m"}`}}}, 3 * time.Minute, "group:b"},
		{"two groups: alphabetical last wins (given reversed)", input{groups: [][2]string{{"b", `{"heartbeat_interval":"3m"}`}, {"a", `{"heartbeat_interval":"2m"}`}}}, 3 * time.Minute, "group:b"},
		{"pc over everything", input{
			global: `{"heartbeat_interval":"1m"}`,
			groups: [][2]string{{"z", `{"heartbeat_interval":"3m"}`}, {"a", `{"heartbeat_interval":"2m"}`}},
			pc:     `{"heartbeat_interval":"4m"}`,
		}, 4 * time.Minute, "pc"},
		{"pc over defaults alone", input{pc: `{"heartbeat_interval":"5s"}`}, 5 * time.Second, "pc"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := tc.in.resolve(t, 4)
			if got := res.Effective.HeartbeatInterval.D(); got != tc.wantHB {
				t.Errorf("heartbeat_interval = %s, want %s", got, tc.wantHB)
			}
			if got := res.Sources["heartbeat_interval"]; got != tc.wantSource {
				t.Errorf("source = %q, want %q", got, tc.wantSource)
			}
			if len(res.Problems) != 0 {
				t.Errorf("unexpected problems: %+v", res.Problems)
			}
		})
	}
}

func TestResolveDefaultsOnly(t *testing.T) {
	res := fleetconfig.Resolve(fleetconfig.Defaults(6), nil, nil, nil)
	want := wire.EffectiveConfig{
		TargetVersionJitter: wire.Duration(10 * time.Minute),
		HeartbeatInterval:   wire.Duration(30 * time.Second),
		InventoryInterval:   wire.Duration(24 * time.Hour),
		InventoryJitter:     wire.Duration(10 * time.Minute),
		InventoryEnabled:    true,
		MaxLocalConcurrent:  6,
		HostPerfInterval:    wire.Duration(time.Minute),
	}
	if res.Effective != want {
		t.Errorf("effective = %+v, want %+v", res.Effective, want)
	}
	for _, f := range fleetconfig.Fields() {
		if res.Sources[f.Name] != "default" {
			t.Errorf("source of %s = %q, want default", f.Name, res.Sources[f.Name])
		}
	}
	if len(res.Sources) != len(fleetconfig.Fields()) || res.Conflicts != nil || res.Problems != nil {
		t.Errorf("sources %v, conflicts %v, problems %v", res.Sources, res.Conflicts, res.Problems)
	}
	if got := fleetconfig.Defaults(0).MaxLocalConcurrent; got != 1 {
		t.Errorf("Defaults(0).MaxLocalConcurrent = %d, want 1 (never zero run slots)", got)
	}
}

// TestResolveSourcesNameTheLayer checks that every field's source is the
// layer that set it, each field independently.
func TestResolveSourcesNameTheLayer(t *testing.T) {
	res := input{
		global: `{"target_version":"1.0.0","inventory_interval":"12h"}`,
		groups: [][2]string{{"canary", `{"target_version":"1.1.0","inventory_jitter":"5m"}`}},
		pc:     `{"max_local_concurrent":2}`,
	}.resolve(t, 8)
	want := map[string]string{
		"target_version":        "group:canary",
		"target_version_jitter": "default",
		"heartbeat_interval":    "default",
		"inventory_interval":    "global",
		"inventory_jitter":      "group:canary",
		"inventory_enabled":     "default",
		"max_local_concurrent":  "pc",
		"host_perf_interval":    "default",
	}
	if !reflect.DeepEqual(res.Sources, want) {
		t.Errorf("sources = %v, want %v", res.Sources, want)
	}
	e := res.Effective
	if e.TargetVersion != "1.1.0" || e.InventoryInterval.D() != 12*time.Hour || e.InventoryJitter.D() != 5*time.Minute || e.MaxLocalConcurrent != 2 || !e.InventoryEnabled {
		t.Errorf("effective = %+v", e)
	}
}

func TestResolveConflicts(t *testing.T) {
	tests := []struct {
		name string
		in   input
		want []wire.ConfigConflict
	}{
		{"one group: no conflict", input{groups: [][2]string{{"a", `{"max_local_concurrent":2}`}}}, nil},
		{"two groups, different fields: no conflict", input{groups: [][2]string{{"a", `{"max_local_concurrent":2}`}, {"b", `{"heartbeat_interval":"1m"}`}}}, nil},
		{"global and one group: no conflict", input{global: `{"max_local_concurrent":3}`, groups: [][2]string{{"a", `{"max_local_concurrent":2}`}}}, nil},
		{"two groups, same field", input{groups: [][2]string{{"finance", `{"max_local_concurrent":4}`}, {"canary", `{"max_local_concurrent":2}`}}},
			[]wire.ConfigConflict{{Field: "max_local_concurrent", Groups: []string{"canary", "finance"}, Winner: "finance"}}},
		{"same value still a conflict", input{groups: [][2]string{{"a", `{"inventory_enabled":false}`}, {"b", `{"inventory_enabled":false}`}}},
			[]wire.ConfigConflict{{Field: "inventory_enabled", Groups: []string{"a", "b"}, Winner: "b"}}},
		{"three groups, two fields", input{groups: [][2]string{
			{"c", `{"heartbeat_interval":"3m","max_local_concurrent":3}`},
			{"a", `{"heartbeat_interval":"1m"}`},
			{"b", `{"heartbeat_interval":"2m","max_local_concurrent":2}`},
		}}, []wire.ConfigConflict{
			{Field: "heartbeat_interval", Groups: []string{"a", "b", "c"}, Winner: "c"},
			{Field: "max_local_concurrent", Groups: []string{"b", "c"}, Winner: "c"},
		}},
		// The conflict is between groups; the pc layer still wins the value.
		{"pc overrides, conflict still reported", input{groups: [][2]string{{"a", `{"max_local_concurrent":2}`}, {"b", `{"max_local_concurrent":3}`}}, pc: `{"max_local_concurrent":9}`},
			[]wire.ConfigConflict{{Field: "max_local_concurrent", Groups: []string{"a", "b"}, Winner: "b"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := tc.in.resolve(t, 1)
			if !reflect.DeepEqual(res.Conflicts, tc.want) {
				t.Errorf("conflicts = %+v, want %+v", res.Conflicts, tc.want)
			}
			for _, c := range res.Conflicts {
				if want := "group:" + c.Winner; res.Sources[c.Field] != want && res.Sources[c.Field] != "pc" {
					t.Errorf("%s: source %q is neither the winner %q nor pc", c.Field, res.Sources[c.Field], want)
				}
			}
		})
	}
}

// TestResolveBadValuesFallBackToDefault: a value that cannot be used makes
// the field take its built-in default — not the value of a lower layer —
// and is reported with its layer and field. A valid value in a higher
// layer still wins.
func TestResolveBadValuesFallBackToDefault(t *testing.T) {
	type problem struct{ layer, field string }
	tests := []struct {
		name      string
		in        input
		field     string
		want      string // fieldValue of the effective config
		source    string
		problems  []problem
		msgSubstr string
	}{
		{"garbage duration", input{global: `{"heartbeat_interval":"soon"}`}, "heartbeat_interval", "30s", "default", []problem{{"global", "heartbeat_interval"}}, "invalid duration"},
		{"garbage duration over a valid global", input{global: `{"heartbeat_interval":"1m"}`, groups: [][2]string{{"a", `{"heartbeat_interval":"soon"}`}}}, "heartbeat_interval", "30s", "default", []problem{{"group:a", "heartbeat_interval"}}, "invalid duration"},
		{"negative duration over a valid global", input{global: `{"heartbeat_interval":"1m"}`, groups: [][2]string{{"a", `{"heartbeat_interval":"-5s"}`}}}, "heartbeat_interval", "30s", "default", []problem{{"group:a", "heartbeat_interval"}}, "negative"},
		{"heartbeat 0s below Min over a valid global", input{global: `{"heartbeat_interval":"1m"}`, pc: `{"heartbeat_interval":"0s"}`}, "heartbeat_interval", "30s", "default", []problem{{"pc", "heartbeat_interval"}}, "at least 1s"},
		{"heartbeat above Max over a valid group", input{groups: [][2]string{{"a", `{"heartbeat_interval":"2m"}`}}, pc: `{"heartbeat_interval":"2h"}`}, "heartbeat_interval", "30s", "default", []problem{{"pc", "heartbeat_interval"}}, "at most 1h"},
		{"inventory_interval below Min", input{global: `{"inventory_interval":"5s"}`}, "inventory_interval", "24h", "default", []problem{{"global", "inventory_interval"}}, "at least 10s"},
		{"target_version_jitter above Max (8d)", input{global: `{"target_version_jitter":"8d"}`}, "target_version_jitter", "10m", "default", []problem{{"global", "target_version_jitter"}}, "at most"},
		{"inventory_jitter above Max", input{global: `{"inventory_jitter":"25h"}`}, "inventory_jitter", "10m", "default", []problem{{"global", "inventory_jitter"}}, "at most"},
		{"max_local_concurrent 0 over a valid global", input{global: `{"max_local_concurrent":3}`, pc: `{"max_local_concurrent":0}`}, "max_local_concurrent", "7", "default", []problem{{"pc", "max_local_concurrent"}}, "at least 1"},
		{"bad target_version over a valid global", input{global: `{"target_version":"1.0.0"}`, pc: `{"target_version":"1.0 beta"}`}, "target_version", "", "default", []problem{{"pc", "target_version"}}, "may contain only"},
		{"valid higher layer after an invalid lower one wins", input{global: `{"heartbeat_interval":"garbage"}`, pc: `{"heartbeat_interval":"2m"}`}, "heartbeat_interval", "2m", "pc", []problem{{"global", "heartbeat_interval"}}, "invalid duration"},
		{"valid group after an invalid group wins", input{groups: [][2]string{{"b", `{"heartbeat_interval":"2m"}`}, {"a", `{"heartbeat_interval":"0s"}`}}}, "heartbeat_interval", "2m", "group:b", []problem{{"group:a", "heartbeat_interval"}}, "at least 1s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := tc.in.resolve(t, 7)
			if got := fieldValue(res.Effective, tc.field); got != tc.want {
				t.Errorf("%s = %q, want %q", tc.field, got, tc.want)
			}
			if got := res.Sources[tc.field]; got != tc.source {
				t.Errorf("source = %q, want %q", got, tc.source)
			}
			var got []problem
			for _, p := range res.Problems {
				got = append(got, problem{p.Layer, p.Field})
				if !strings.Contains(p.Message, tc.msgSubstr) || !strings.HasSuffix(p.Message, "; using the default") || !strings.Contains(p.Message, tc.field) {
					t.Errorf("problem message %q: want it to name %s, contain %q and end with \"; using the default\"", p.Message, tc.field, tc.msgSubstr)
				}
				if len(p.Value) == 0 {
					t.Errorf("problem %+v does not carry the bad value", p)
				}
			}
			if !reflect.DeepEqual(got, tc.problems) {
				t.Errorf("problems = %+v, want %+v", got, tc.problems)
			}
		})
	}
}

// fieldValue returns one field of e as a string (test helper).
func fieldValue(e wire.EffectiveConfig, name string) string {
	short := func(d wire.Duration) string {
		s := d.D().String()
		if strings.HasSuffix(s, "m0s") {
			s = strings.TrimSuffix(s, "0s")
		}
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
		return s
	}
	switch name {
	case "target_version":
		return e.TargetVersion
	case "target_version_jitter":
		return short(e.TargetVersionJitter)
	case "heartbeat_interval":
		return short(e.HeartbeatInterval)
	case "inventory_interval":
		return short(e.InventoryInterval)
	case "inventory_jitter":
		return short(e.InventoryJitter)
	case "inventory_enabled":
		return strconv.FormatBool(e.InventoryEnabled)
	case "max_local_concurrent":
		return strconv.Itoa(e.MaxLocalConcurrent)
	}
	return "?"
}

func TestResolveWrongTypesPerField(t *testing.T) {
	// Every field but inventory_interval has the wrong JSON type; the one
	// good field of the same layer still applies.
	res := input{global: `{
		"target_version": 7,
		"target_version_jitter": 600,
		"heartbeat_interval": 30,
		"inventory_interval": "2h",
		"inventory_jitter": ["10m"],
		"inventory_enabled": "yes",
		"max_local_concurrent": "4"
	}`}.resolve(t, 3)
	if res.Effective.InventoryInterval.D() != 2*time.Hour || res.Sources["inventory_interval"] != "global" {
		t.Errorf("inventory_interval = %s from %s, want 2h from global", res.Effective.InventoryInterval, res.Sources["inventory_interval"])
	}
	want := fleetconfig.Defaults(3)
	want.InventoryInterval = wire.Duration(2 * time.Hour)
	if res.Effective != want {
		t.Errorf("effective = %+v, want defaults with inventory_interval 2h: %+v", res.Effective, want)
	}
	var fields []string
	for _, p := range res.Problems {
		if p.Layer != "global" {
			t.Errorf("problem %+v: layer %q, want global", p, p.Layer)
		}
		fields = append(fields, p.Field)
	}
	slices.Sort(fields)
	wantFields := []string{"heartbeat_interval", "inventory_enabled", "inventory_jitter", "max_local_concurrent", "target_version", "target_version_jitter"}
	if !slices.Equal(fields, wantFields) {
		t.Errorf("problem fields = %v, want %v", fields, wantFields)
	}
}

// TestResolveIntRejectsStringsAndFractions: max_local_concurrent is an int
// (ConfigScope has *int); a JSON string holding a number is the wrong type.
func TestResolveIntRejectsStringsAndFractions(t *testing.T) {
	for _, raw := range []string{`"4"`, `4.5`, `1e3`, `true`, `99999999999999999999999`, `-1`} {
		res := input{pc: `{"max_local_concurrent":` + raw + `}`}.resolve(t, 5)
		if res.Effective.MaxLocalConcurrent != 5 || len(res.Problems) != 1 || res.Problems[0].Field != "max_local_concurrent" {
			t.Errorf("max_local_concurrent %s: got %d, problems %+v; want the default 5 and one problem", raw, res.Effective.MaxLocalConcurrent, res.Problems)
		}
	}
}

func TestParseLayerNullEqualsAbsent(t *testing.T) {
	l := layer(t, "pc", `{"heartbeat_interval":null,"inventory_enabled":false, "max_local_concurrent" : null }`)
	if _, ok := l.Fields["heartbeat_interval"]; ok {
		t.Errorf("null field kept: %v", l.Fields)
	}
	if len(l.Fields) != 1 {
		t.Errorf("fields = %v, want only inventory_enabled", l.Fields)
	}
	// A null in a higher layer does not override a lower one, and is no problem.
	res := input{global: `{"heartbeat_interval":"1m","max_local_concurrent":2}`, pc: `{"heartbeat_interval":null,"max_local_concurrent":null}`}.resolve(t, 4)
	if res.Effective.HeartbeatInterval.D() != time.Minute || res.Sources["heartbeat_interval"] != "global" || res.Effective.MaxLocalConcurrent != 2 || len(res.Problems) != 0 {
		t.Errorf("null overrode global: %+v sources %v problems %v", res.Effective, res.Sources, res.Problems)
	}
}

func TestParseLayerUnknownFieldsIgnored(t *testing.T) {
	res := input{global: `{"future_field":{"x":1},"heartbeat_interval":"1m","HEARTBEAT_INTERVAL":"5m"}`}.resolve(t, 2)
	if res.Effective.HeartbeatInterval.D() != time.Minute {
		t.Errorf("heartbeat = %s, want 1m (field names are case-sensitive)", res.Effective.HeartbeatInterval)
	}
	if len(res.Problems) != 0 {
		t.Errorf("unknown fields reported as problems: %+v", res.Problems)
	}
	if _, ok := res.Sources["future_field"]; ok || len(res.Sources) != len(fleetconfig.Fields()) {
		t.Errorf("sources = %v", res.Sources)
	}
}

func TestParseLayerRejectsNonObjects(t *testing.T) {
	for _, data := range []string{``, `null`, `[]`, `["heartbeat_interval"]`, `"x"`, `1`, `true`, `{`, `{"a":1}x`, "\xff"} {
		if l, err := fleetconfig.ParseLayer("global", []byte(data)); err == nil {
			t.Errorf("ParseLayer(%q) = %+v, want an error", data, l)
		} else if !strings.Contains(err.Error(), "global") {
			t.Errorf("ParseLayer(%q) error %q does not name the layer", data, err)
		}
	}
	l, err := fleetconfig.ParseLayer("pc", []byte(` {} `))
	if err != nil || l.Name != "pc" || l.Fields == nil || len(l.Fields) != 0 {
		t.Errorf("ParseLayer({}) = %+v, %v; want an empty layer", l, err)
	}
}

// TestResolveUnknownGroupRowsIgnored documents the contract: agent_config
// may hold groups.<g> rows for groups the PC is not in. The caller (agent or
// CLI) passes only the layers of the PC's groups; Resolve applies exactly
// what it is given and does not know about any other row.
func TestResolveUnknownGroupRowsIgnored(t *testing.T) {
	kv := map[string]string{
		"global":        `{"heartbeat_interval":"1m"}`,
		"groups.canary": `{"max_local_concurrent":2}`,
		"groups.other":  `{"heartbeat_interval":"5m","max_local_concurrent":9}`,
	}
	pcGroups := []string{"canary"}
	var groups []fleetconfig.Layer
	for _, g := range pcGroups {
		groups = append(groups, *layer(t, "group:"+g, kv["groups."+g]))
	}
	res := fleetconfig.Resolve(fleetconfig.Defaults(4), layer(t, "global", kv["global"]), groups, nil)
	if res.Effective.HeartbeatInterval.D() != time.Minute || res.Effective.MaxLocalConcurrent != 2 || res.Conflicts != nil {
		t.Errorf("the other group's row leaked in: %+v, conflicts %v", res.Effective, res.Conflicts)
	}
	for _, src := range res.Sources {
		if src == "group:other" {
			t.Errorf("source group:other in %v", res.Sources)
		}
	}
}

func TestValidate(t *testing.T) {
	accept := []struct{ field, input, want string }{
		{"heartbeat_interval", "1m", `"1m"`},
		{"heartbeat_interval", "1s", `"1s"`},
		{"heartbeat_interval", "1h", `"1h"`},
		{"target_version_jitter", "7d", `"7d"`},
		{"target_version_jitter", "0s", `"0s"`},
		{"inventory_interval", "30d", `"30d"`},
		{"inventory_jitter", "90s", `"90s"`},
		{"inventory_enabled", "false", `false`},
		{"inventory_enabled", "true", `true`},
		{"max_local_concurrent", "4", `4`},
		{"target_version", "1.4.0-rc.1+build_7", `"1.4.0-rc.1+build_7"`},
	}
	for _, tc := range accept {
		raw, err := fleetconfig.Validate(tc.field, tc.input)
		if err != nil || string(raw) != tc.want {
			t.Errorf("Validate(%s, %q) = %s, %v; want %s", tc.field, tc.input, raw, err, tc.want)
			continue
		}
		// What Validate accepts, the resolver applies without a problem.
		res := fleetconfig.Resolve(fleetconfig.Defaults(1), &fleetconfig.Layer{Name: "global", Fields: map[string]json.RawMessage{tc.field: raw}}, nil, nil)
		if len(res.Problems) != 0 || res.Sources[tc.field] != "global" {
			t.Errorf("Validate(%s, %q) accepted a value the resolver rejects: %+v", tc.field, tc.input, res.Problems)
		}
	}
	reject := []struct{ field, input, want string }{
		{"heartbeat_interval", "soon", `"30s", "10m", "24h" or "7d"`},
		{"heartbeat_interval", "30", `like "30s"`},
		{"heartbeat_interval", "0s", "at least 1s"},
		{"heartbeat_interval", "2h", "at most 1h"},
		{"heartbeat_interval", "-5s", "negative"},
		{"inventory_interval", "9s", "at least 10s"},
		{"target_version_jitter", "8d", "at most 168h"},
		{"inventory_enabled", "yes", "true or false"},
		{"max_local_concurrent", "0", "at least 1"},
		{"max_local_concurrent", "two", "whole number"},
		{"max_local_concurrent", "2.5", "whole number"},
		{"target_version", "", "1-64 characters"},
		{"target_version", "1.0 beta", "may contain only letters, digits and . - + _"},
		{"target_version", strings.Repeat("9", 65), "1-64 characters"},
	}
	for _, tc := range reject {
		raw, err := fleetconfig.Validate(tc.field, tc.input)
		if err == nil {
			t.Errorf("Validate(%s, %q) = %s, want an error", tc.field, tc.input, raw)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("Validate(%s, %q) error %q: want it to name the field and contain %q", tc.field, tc.input, err, tc.want)
		}
	}
	_, err := fleetconfig.Validate("heartbeat", "1m")
	if err == nil {
		t.Fatal("unknown field accepted")
	}
	if !strings.Contains(err.Error(), `unknown field "heartbeat"`) || !strings.Contains(err.Error(), "valid fields:") {
		t.Errorf("unknown field error %q", err)
	}
	for _, f := range fleetconfig.Fields() {
		if !strings.Contains(err.Error(), f.Name) {
			t.Errorf("unknown field error does not list %s", f.Name)
		}
	}
}

func TestUsageListsFieldsFormatsDefaults(t *testing.T) {
	u := fleetconfig.Usage()
	for _, f := range fleetconfig.Fields() {
		line := ""
		for _, l := range strings.Split(u, "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), f.Name+" ") {
				line = l
			}
		}
		if line == "" {
			t.Errorf("Usage has no line for %s:\n%s", f.Name, u)
			continue
		}
		if !strings.Contains(line, "default "+f.Default) {
			t.Errorf("%s line lacks its default %q: %s", f.Name, f.Default, line)
		}
		format := map[fleetconfig.Kind]string{fleetconfig.KindDuration: "30s, 10m", fleetconfig.KindBool: "true|false", fleetconfig.KindInt: "integer", fleetconfig.KindVersion: "version"}[f.Kind]
		if !strings.Contains(line, format) {
			t.Errorf("%s line lacks its format %q: %s", f.Name, format, line)
		}
	}
	if got := fleetconfig.FieldNames(); len(got) != len(fleetconfig.Fields()) || got[0] != "target_version" {
		t.Errorf("FieldNames = %v", got)
	}
	if _, ok := fleetconfig.FieldByName("nope"); ok {
		t.Error("FieldByName(nope) found something")
	}
}

func TestNormalizeGroups(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    []string
		badSubs []string
	}{
		{"empty", nil, nil, nil},
		{"sorts and de-duplicates", []string{"finance", "canary", "finance", "Zeta", "canary"}, []string{"Zeta", "canary", "finance"}, nil},
		{"trims spaces", []string{" canary ", "canary"}, []string{"canary"}, nil},
		{"rejects bad names, keeps good", []string{"ok", "bad.name", "", "a b", "a*", "x>"}, []string{"ok"}, []string{`"bad.name"`, `""`, `"a b"`, `"a*"`, `"x>"`}},
		{"allowed punctuation", []string{"a-b", "a_b", "a=b"}, []string{"a-b", "a=b", "a_b"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, bad, err := fleetconfig.NormalizeGroups(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("groups = %q, want %q", got, tc.want)
			}
			if len(bad) != len(tc.badSubs) {
				t.Fatalf("bad = %q, want %d messages", bad, len(tc.badSubs))
			}
			for i, s := range tc.badSubs {
				if !strings.Contains(bad[i], s) {
					t.Errorf("bad[%d] = %q, want it to name %s", i, bad[i], s)
				}
			}
		})
	}
}

func TestParseGroups(t *testing.T) {
	got, bad, err := fleetconfig.ParseGroups([]byte(`{"groups":["b","a","a","no.pe"],"extra":1}`))
	if err != nil || !slices.Equal(got, []string{"a", "b"}) || len(bad) != 1 || !strings.Contains(bad[0], "no.pe") {
		t.Errorf("ParseGroups = %q, %q, %v", got, bad, err)
	}
	got, _, err = fleetconfig.ParseGroups([]byte(`{"groups":null}`))
	if err != nil || len(got) != 0 {
		t.Errorf("null groups = %q, %v", got, err)
	}
	for _, data := range []string{`["a"]`, `{"groups":"a"}`, `{"groups":[1]}`, `nope`} {
		if _, _, err := fleetconfig.ParseGroups([]byte(data)); err == nil {
			t.Errorf("ParseGroups(%s) accepted", data)
		}
	}
}

func TestCheckKeyToken(t *testing.T) {
	for _, s := range []string{"pc-042", "PC_1", "a=b", "x", strings.Repeat("a", 128)} {
		if err := fleetconfig.CheckKeyToken("pc", s); err != nil {
			t.Errorf("CheckKeyToken(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"", strings.Repeat("a", 129), "a.b", "a*", "a>", "a b", "é", "a/b", "a\n"} {
		err := fleetconfig.CheckKeyToken("group", s)
		if err == nil {
			t.Errorf("CheckKeyToken(%q) accepted", s)
		} else if !strings.HasPrefix(err.Error(), "group ") {
			t.Errorf("CheckKeyToken(%q) error %q does not say what it checked", s, err)
		}
	}
}

// FuzzParseLayerResolve: decoding and resolving arbitrary KV values never
// panics, always yields a usable config, and does not depend on the order
// the groups are given in.
func FuzzParseLayerResolve(f *testing.F) {
	f.Add([]byte(`{"heartbeat_interval":"0s","max_local_concurrent":0}`), []byte(`{"heartbeat_interval":"1m"}`), []byte(`null`), 0)
	f.Add([]byte(`{"heartbeat_interval":"-1s","inventory_interval":"1d"}`), []byte(`{"max_local_concurrent":"4"}`), []byte(`{"target_version":"1.0"}`), 4)
	f.Add([]byte(`{"inventory_jitter":"9999999999999999d","target_version_jitter":1e400}`), []byte(`[]`), []byte(`{}`), -3)
	f.Add([]byte(`{"max_local_concurrent":-9223372036854775808,"inventory_enabled":null}`), []byte(`{"heartbeat_interval":"1h0m0.000000001s"}`), []byte(`{"x":{}}`), 1)
	f.Fuzz(func(t *testing.T, a, b, c []byte, cpus int) {
		parse := func(name string, data []byte) *fleetconfig.Layer {
			l, err := fleetconfig.ParseLayer(name, data)
			if err != nil {
				return nil
			}
			return &l
		}
		global := parse("global", a)
		var groups []fleetconfig.Layer
		for _, g := range []struct {
			name string
			data []byte
		}{{"group:b", b}, {"group:a", c}} {
			if l := parse(g.name, g.data); l != nil {
				groups = append(groups, *l)
			}
		}
		pc := parse("pc", c)
		res := fleetconfig.Resolve(fleetconfig.Defaults(cpus), global, groups, pc)
		checkInBounds(t, res.Effective)
		for field, src := range res.Sources {
			if _, ok := fleetconfig.FieldByName(field); !ok {
				t.Fatalf("source for unknown field %q", field)
			}
			switch src {
			case "default", "global", "group:a", "group:b", "pc":
			default:
				t.Fatalf("source %q", src)
			}
		}
		slices.Reverse(groups)
		if again := fleetconfig.Resolve(fleetconfig.Defaults(cpus), global, groups, pc); !reflect.DeepEqual(jsonOf(t, again), jsonOf(t, res)) {
			t.Fatalf("result depends on the order of the groups:\n%s\n%s", jsonOf(t, again), jsonOf(t, res))
		}
	})
}

func jsonOf(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
