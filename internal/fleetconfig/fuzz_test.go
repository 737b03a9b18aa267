package fleetconfig_test

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/kanade-project/kanade/internal/fleetconfig"
	"github.com/kanade-project/kanade/internal/wire"
)

// checkInBounds fails unless every field of e is usable: durations within
// their field's Min and Max, counts at least MinInt, the target version
// empty or valid. An agent runs with whatever Resolve returns, so a value
// out of bounds here is a heartbeat every nanosecond or a ticker panic.
func checkInBounds(t *testing.T, e wire.EffectiveConfig) {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatalf("effective config does not encode: %v", err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, f := range fleetconfig.Fields() {
		raw := m[f.Name]
		switch f.Kind {
		case fleetconfig.KindDuration:
			var d wire.Duration
			if err := json.Unmarshal(raw, &d); err != nil {
				t.Fatalf("%s = %s: %v", f.Name, raw, err)
			}
			if d < 0 || f.Min > 0 && d.D() < f.Min || f.Max > 0 && d.D() > f.Max {
				t.Fatalf("%s = %s is outside [%s, %s]: %+v", f.Name, d, f.Min, f.Max, e)
			}
		case fleetconfig.KindInt:
			var n int
			if err := json.Unmarshal(raw, &n); err != nil || n < max(f.MinInt, 1) {
				t.Fatalf("%s = %s, want a whole number ≥ %d: %+v", f.Name, raw, max(f.MinInt, 1), e)
			}
		case fleetconfig.KindVersion:
			if raw == nil || string(raw) == `""` {
				continue
			}
			if _, err := fleetconfig.ValidateValue(f.Name, raw); err != nil {
				t.Fatalf("%s = %s is not a valid version: %v", f.Name, raw, err)
			}
		}
	}
}

// FuzzConfigScope decodes an agent_config value (a ConfigScope layer) the
// way the agent and the CLI do (ParseLayer, Resolve, Inspect) and the way
// writers check it (ValidateValue). A layer that is not a JSON object is
// refused as a whole with a message; any other layer resolves to a usable
// config, whatever its values. A value is either accepted by the strict
// writer check or reported as a problem by the lenient reader — never
// both, never neither — and the canonical form the writer stores is a
// fixed point that resolves to the same effective value and decodes into
// the typed wire.ConfigScope.
func FuzzConfigScope(f *testing.F) {
	for _, s := range []string{
		`{"heartbeat_interval":"30s","inventory_interval":"24h","max_local_concurrent":4,"inventory_enabled":false,"target_version":"1.2.3"}`,
		`{"inventory_interval":"15s","host_perf_interval":"10s","target_version_jitter":"7d"}`,
		`{"heartbeat_interval":null,"unknown":{"deep":[1,2,3]}}`,
		`{"max_local_concurrent":"4","inventory_enabled":"yes","target_version":"../../x"}`,
		`[]`,
		`null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := fleetconfig.ParseLayer("global", data)
		fields, problems, ok := fleetconfig.Inspect("global", data)
		if err != nil {
			if err.Error() == "" || ok || len(problems) != 1 || problems[0].Message == "" {
				t.Fatalf("refused layer %q: err %q, Inspect ok %v problems %+v", data, err, ok, problems)
			}
			return
		}
		if !ok {
			t.Fatalf("ParseLayer accepted %q, Inspect did not: %+v", data, problems)
		}
		for k, v := range l.Fields {
			if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
				t.Fatalf("layer %q keeps null field %s", data, k)
			}
			if _, stored := fields[k]; !stored {
				t.Fatalf("Inspect of %q lost field %s", data, k)
			}
		}
		res := fleetconfig.Resolve(fleetconfig.Defaults(2), &l, nil, nil)
		checkInBounds(t, res.Effective)
		for _, p := range res.Problems {
			if p.Message == "" || p.Field == "" {
				t.Fatalf("problem without field or message for %q: %+v", data, p)
			}
		}
		canonical := map[string]json.RawMessage{}
		for _, fd := range fleetconfig.Fields() {
			raw, set := l.Fields[fd.Name]
			if !set {
				if res.Sources[fd.Name] != "default" {
					t.Fatalf("%s is unset in %q but its source is %q", fd.Name, data, res.Sources[fd.Name])
				}
				continue
			}
			reported := slices.ContainsFunc(res.Problems, func(p wire.ConfigProblem) bool { return p.Field == fd.Name })
			canon, err := fleetconfig.ValidateValue(fd.Name, raw)
			switch {
			case err != nil && err.Error() == "":
				t.Fatalf("ValidateValue(%s, %s) failed with an empty message", fd.Name, raw)
			case err != nil && !reported:
				t.Fatalf("%s = %s: refused by the writer (%v) but used by the reader", fd.Name, raw, err)
			case err == nil && reported:
				t.Fatalf("%s = %s: accepted by the writer but reported by the reader: %+v", fd.Name, raw, res.Problems)
			case err != nil:
				continue
			}
			again, err := fleetconfig.ValidateValue(fd.Name, canon)
			if err != nil || !bytes.Equal(again, canon) {
				t.Fatalf("%s: canonical value %s is not a fixed point: %s, %v", fd.Name, canon, again, err)
			}
			canonical[fd.Name] = canon
		}
		// The canonical layer resolves to the same config as the original.
		cb, err := json.Marshal(canonical)
		if err != nil {
			t.Fatal(err)
		}
		cl, err := fleetconfig.ParseLayer("global", cb)
		if err != nil {
			t.Fatalf("canonical layer %s does not parse: %v", cb, err)
		}
		cres := fleetconfig.Resolve(fleetconfig.Defaults(2), &cl, nil, nil)
		if cres.Effective != res.Effective || len(cres.Problems) != 0 {
			t.Fatalf("canonical layer %s resolves to %+v (problems %+v), the original %q to %+v", cb, cres.Effective, cres.Problems, data, res.Effective)
		}
		var typed wire.ConfigScope
		if err := json.Unmarshal(cb, &typed); err != nil {
			t.Fatalf("canonical layer %s does not decode as a wire.ConfigScope: %v", cb, err)
		}
	})
}

// FuzzAgentGroups decodes an agent_groups value as the agent's config sync,
// the CLI and the API do (ParseGroups). A value that is not {"groups":
// [...]} is refused with a message saying so; otherwise every group kept
// is usable as a subject token and inside a KV key (the agent subscribes
// to $KV.agent_config.groups.<g>), sorted and unique, every dropped name
// is reported with a message, and writing the result back (as the CLI and
// API do) reads back identically.
func FuzzAgentGroups(f *testing.F) {
	for _, s := range []string{
		`{"groups":["office","canary"]}`,
		`{"groups":["b","a","a"," c ","no.pe","a b","../x","","é"]}`,
		`{"groups":null,"extra":1}`,
		`{"groups":"office"}`,
		`{"groups":[1,2]}`,
		`["office"]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		groups, bad, err := fleetconfig.ParseGroups(data)
		if err != nil {
			if !strings.Contains(err.Error(), `{"groups": [...]}`) {
				t.Fatalf("refusal of %q does not say what is expected: %v", data, err)
			}
			return
		}
		var in wire.AgentGroups
		if err := json.Unmarshal(data, &in); err != nil {
			t.Fatalf("ParseGroups accepted %q, which does not decode: %v", data, err)
		}
		if len(groups)+len(bad) > len(in.Groups) {
			t.Fatalf("%q: %d kept + %d reported out of %d names", data, len(groups), len(bad), len(in.Groups))
		}
		if !slices.IsSorted(groups) || len(slices.Compact(slices.Clone(groups))) != len(groups) {
			t.Fatalf("%q: groups %q not sorted and unique", data, groups)
		}
		for _, g := range groups {
			if !wire.ValidToken(g) || fleetconfig.CheckKeyToken("group", g) != nil {
				t.Fatalf("%q: kept group %q, not usable in a subject or KV key", data, g)
			}
			if !slices.Contains(in.Groups, g) && !slices.ContainsFunc(in.Groups, func(s string) bool { return strings.TrimSpace(s) == g }) {
				t.Fatalf("%q: kept group %q that was not given", data, g)
			}
		}
		for _, b := range bad {
			if !strings.HasPrefix(b, "group ") {
				t.Fatalf("%q: report %q does not say what was wrong", data, b)
			}
		}
		back, err := json.Marshal(wire.AgentGroups{Groups: groups})
		if err != nil {
			t.Fatal(err)
		}
		again, bad2, err := fleetconfig.ParseGroups(back)
		if err != nil || len(bad2) != 0 || !slices.Equal(again, groups) {
			t.Fatalf("written back as %s, read as %q %q %v; want %q", back, again, bad2, err, groups)
		}
	})
}
