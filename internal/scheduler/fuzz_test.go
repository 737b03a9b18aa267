package scheduler_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/jobs"
	"github.com/kanade-project/kanade/internal/scheduler"
	"github.com/kanade-project/kanade/internal/wire"
)

// fuzzInstants are the times Next is asked about: ordinary ones and the
// nights clocks change (a cron slot at 02:30 does not exist on one of them
// and exists twice on the other), in zones the seeds name.
var fuzzInstants = []time.Time{
	time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC),
	time.Date(2026, 3, 29, 0, 30, 0, 0, time.UTC),  // Europe: clocks go forward at 01:00 UTC
	time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC), // Europe: clocks go back at 01:00 UTC
	time.Date(2026, 9, 6, 3, 0, 0, 0, time.UTC),    // America/Santiago: forward at midnight local
	time.Date(2096, 3, 1, 0, 0, 0, 0, time.UTC),    // no 29 February until 2104
	time.Date(9999, 12, 31, 23, 59, 0, 0, time.UTC),
}

// FuzzParseSchedule feeds schedules (YAML or JSON, as the API and the CLI
// receive them) to the strict parser. What it refuses is a list of
// problems with messages; what it accepts passes Validate, has valid ids,
// exactly one of cron and per_pc, a cron expression whose next slot is
// always strictly later than the time asked about (or none), non-negative
// whole-second jitter below the starting deadline, and is stored in a
// canonical YAML that reads back, strictly and leniently, to the same
// schedule — and so does its JSON form.
func FuzzParseSchedule(f *testing.F) {
	for _, s := range []string{
		"id: nightly\njob: cleanup\ncron: \"0 3 * * *\"\ntimezone: Europe/Paris\ntarget: {groups: [office]}\njitter: 10m\nstarting_deadline: 1h\n",
		"id: a\njob: b\nper_pc: {every: 6h}\ntarget: {all: true}\n",
		`{"id": "a", "job": "b", "per_pc": "once", "target": {"pcs": ["pc-1"]}, "enabled": false}`,
		"id: a\njob: b\ncron: \"30 2 * * *\"\ntimezone: America/Santiago\ntarget: {all: true}\n",
		"id: a\njob: b\ncron: \"0 0 29 2 *\"\ntarget: {all: true}\n",
		"id: a\njob: b\ncron: \"@every 1s\"\ntarget: {all: true}\n",
		"id: a\njob: b\ncron: \"*/0 * * * *\"\ntarget: {all: true}\n",
		"id: a\njob: b\ncron: \"@daily\"\ntimezone: ../../../../etc/passwd\ntarget: {all: true}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		s, err := scheduler.ParseStrict(in)
		if err != nil {
			var ve *jobs.ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 {
				t.Fatalf("refused %q with %T %v, want a ValidationError naming problems", in, err, err)
			}
			for _, p := range ve.Problems {
				if strings.TrimSpace(p.Msg) == "" {
					t.Fatalf("refused %q with an empty problem: %+v", in, p)
				}
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("ParseStrict accepted %q, Validate refuses it: %v", in, err)
		}
		if jobs.CheckID("schedule id", s.ID) != nil || jobs.CheckID("job id", s.Job) != nil {
			t.Fatalf("accepted %q with id %q job %q", in, s.ID, s.Job)
		}
		if (s.Cron == "") == (s.PerPC == nil) {
			t.Fatalf("accepted %q with cron %q and per_pc %+v", in, s.Cron, s.PerPC)
		}
		if p := s.PerPC; p != nil && !p.Once && p.Every.D() < scheduler.MinEvery {
			t.Fatalf("accepted %q with per_pc every %s", in, p.Every)
		}
		if s.Jitter < 0 || s.Jitter%jobs.Duration(time.Second) != 0 || s.StartingDeadline < 0 || s.StartingDeadline > 0 && s.StartingDeadline <= s.Jitter {
			t.Fatalf("accepted %q with jitter %s starting_deadline %s", in, s.Jitter, s.StartingDeadline)
		}
		for _, n := range append(append([]string{}, s.Target.Groups...), s.Target.PCs...) {
			if !wire.ValidToken(n) {
				t.Fatalf("accepted %q targeting %q, not a subject token", in, n)
			}
		}
		if s.Cron != "" {
			for _, at := range fuzzInstants {
				if n := s.Next(at); !n.IsZero() && !n.After(at) {
					t.Fatalf("cron %q in %q: Next(%s) = %s, not after it", s.Cron, s.Timezone, at, n)
				}
			}
		}

		stored, err := s.YAML()
		if err != nil {
			t.Fatalf("accepted %q, cannot store it: %v", in, err)
		}
		for name, parse := range map[string]func([]byte) (scheduler.Schedule, error){
			"strict":  scheduler.ParseStrict,
			"lenient": scheduler.ParseLenient,
		} {
			back, err := parse(stored)
			if err != nil || !sameJSON(t, back, s) {
				t.Fatalf("stored form of %q read %s: %v\n%+v\nwant %+v\nstored:\n%s", in, name, err, back, s, stored)
			}
		}
		js, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("accepted %q, cannot encode it as JSON: %v", in, err)
		}
		if back, err := scheduler.ParseStrict(js); err != nil || !sameJSON(t, back, s) {
			t.Fatalf("JSON form of %q read back: %v\n%+v\nwant %+v\njson: %s", in, err, back, s, js)
		}
	})
}

// sameJSON reports whether a and b encode to the same JSON: equal for
// every use, where reflect.DeepEqual would tell an empty list of groups
// from none (both select nothing).
func sameJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(ja) == string(jb)
}
