package jobs_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/jobs"
)

func TestParsePlanYAMLAndJSON(t *testing.T) {
	yamlPlan := `rollout:
  waves:
    - group: canary
    - {group: wave1, delay: 30m}
  stop_if_failed_pct: 20
jitter: 1m
deadline: 2h
`
	jsonPlan := `{"rollout": {"waves": [{"group": "canary"}, {"group": "wave1", "delay": "30m"}], "stop_if_failed_pct": 20},
  "jitter": "1m", "deadline": "2h"}`
	want := jobs.Plan{
		Jitter: jobs.Duration(time.Minute), Deadline: jobs.Duration(2 * time.Hour),
		Rollout: &jobs.Rollout{Waves: []jobs.Wave{{Group: "canary"}, {Group: "wave1", Delay: jobs.Duration(30 * time.Minute)}}, StopIfFailedPct: 20},
	}
	for name, doc := range map[string]string{"yaml": yamlPlan, "json": jsonPlan} {
		p, err := jobs.ParsePlan([]byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(p, want) {
			t.Fatalf("%s: got %+v, want %+v", name, p, want)
		}
	}
	// JSON is read by a JSON parser: YAML parsers reject the \/ escape.
	p, err := jobs.ParsePlan([]byte(`{"target": {"groups": ["site\/paris"]}}`))
	if err != nil {
		t.Fatalf("JSON escape: %v", err)
	}
	if p.Target.Groups[0] != "site/paris" {
		t.Fatalf("JSON escape decoded as %q", p.Target.Groups[0])
	}
}

func TestParsePlanRejects(t *testing.T) {
	cases := []struct{ name, doc, want string }{
		{"unknown key inside a wave", "rollout:\n  waves:\n    - group: canary\n    - group: wave1\n      dealy: 5m\n",
			"line 5: rollout.waves[1].dealy: unknown key (expected one of group, delay)"},
		{"unknown key in JSON target", `{"target": {"all": true, "pc": ["x"]}}`,
			"target.pc: unknown key (expected one of all, groups, pcs)"},
		{"empty target", "jitter: 1m\n", "target: select PCs: all: true, groups: [...] or pcs: [...]"},
		{"all with pcs", "target: {all: true, pcs: [a]}\n", "target: all: true already selects every PC"},
		{"target and waves", "target: {all: true}\nrollout: {waves: [{group: canary}]}\n", "target: leave target empty when rollout.waves is set"},
		{"bad pc token", "target: {pcs: [\"pc.1\"]}\n", "target.pcs[0]: pc \"pc.1\" is not usable in a NATS subject"},
		{"duplicate pc", "target: {pcs: [a, b, a]}\n", "target.pcs[2]: pc \"a\" is already listed at pcs[0]"},
		{"bad jitter", "target: {all: true}\njitter: soon\n", "line 2: jitter: invalid duration \"soon\""},
		{"fractional jitter", "target: {all: true}\njitter: 1.5s\n", "jitter: must be a whole number of seconds"},
		{"deadline shorter than jitter", "target: {all: true}\njitter: 10m\ndeadline: 5m\n", "deadline: must be longer than jitter (10m)"},
		{"deadline and deadline_at", "target: {all: true}\ndeadline: 5m\ndeadline_at: 2030-01-01T00:00:00Z\n", "deadline: set deadline or deadline_at, not both"},
		{"first wave delayed", "rollout: {waves: [{group: canary, delay: 5m}]}\n", "rollout.waves[0].delay: the first wave is published at once"},
		{"duplicate wave group", "rollout: {waves: [{group: a}, {group: a, delay: 1m}]}\n", "rollout.waves[1].group: group \"a\" is already wave 0"},
		{"wave without group", "rollout: {waves: [{delay: 0s}]}\n", "rollout.waves[0].group: is required"},
		{"no waves", "target: {all: true}\nrollout: {stop_if_failed_pct: 5}\n", "rollout.waves: is required"},
		{"pct out of range", "rollout: {waves: [{group: a}], stop_if_failed_pct: 150}\n", "rollout.stop_if_failed_pct: must be between 0 and 100, got 150"},
		{"pct not a number", "rollout: {waves: [{group: a}], stop_if_failed_pct: lots}\n", "rollout.stop_if_failed_pct: expected a number"},
		{"span too long", "rollout: {waves: [{group: a}, {group: b, delay: 5d}, {group: c, delay: 3d}]}\n", "rollout.waves: the waves span 8d; at most 7d"},
		{"bad exec_id", "exec_id: a.b\ntarget: {all: true}\n", "exec_id: exec_id \"a.b\" may contain only"},
		// Found by FuzzParsePlan: the sum wrapped past the int64 limit
		// to a negative span, which passed the check.
		{"span that overflows", "rollout: {waves: [{group: a}, {group: b, delay: 106751d}, {group: c, delay: 106751d}]}\n", "rollout.waves: the waves span 2562047h47m16.854775807s; at most 7d"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := jobs.ParsePlan([]byte(c.doc))
			var ve *jobs.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v (%T), want a ValidationError", err, err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error does not contain %q:\n%v", c.want, err)
			}
		})
	}
}
