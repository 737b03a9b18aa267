package scheduler_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/jobs"
	"github.com/kanade-project/kanade/internal/scheduler"
)

func TestParseStrictAcceptsBothForms(t *testing.T) {
	s, err := scheduler.ParseStrict([]byte(`id: nightly
job: cleanup
cron: "0 3 * * *"
timezone: Europe/Paris
target: {groups: [office]}
jitter: 10m
starting_deadline: 1h
`))
	if err != nil {
		t.Fatal(err)
	}
	want := scheduler.Schedule{ID: "nightly", Job: "cleanup", Enabled: true, Cron: "0 3 * * *", Timezone: "Europe/Paris",
		Target: jobs.Target{Groups: []string{"office"}}, Jitter: jobs.Duration(10 * time.Minute), StartingDeadline: jobs.Duration(time.Hour)}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("got %+v\nwant %+v", s, want)
	}
	for doc, want := range map[string]scheduler.PerPC{
		"id: a\njob: b\nper_pc: once\ntarget: {all: true}\n":                          {Once: true},
		"id: a\njob: b\nper_pc: {every: 6h}\ntarget: {all: true}\n":                   {Every: jobs.Duration(6 * time.Hour)},
		`{"id": "a", "job": "b", "per_pc": {"every": "1d"}, "target": {"all": true}}`: {Every: jobs.Duration(24 * time.Hour)},
	} {
		s, err := scheduler.ParseStrict([]byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		if s.PerPC == nil || *s.PerPC != want || !s.Enabled {
			t.Fatalf("%s: per_pc %+v enabled %v", doc, s.PerPC, s.Enabled)
		}
		// The canonical YAML reads back strictly to the same schedule.
		b, err := s.YAML()
		if err != nil {
			t.Fatal(err)
		}
		again, err := scheduler.ParseStrict(b)
		if err != nil || !reflect.DeepEqual(again, s) {
			t.Fatalf("round trip of %s: %+v %v\n%s", doc, again, err, b)
		}
	}
}

func TestParseStrictRejects(t *testing.T) {
	const base = "id: a\njob: b\ntarget: {all: true}\n"
	cases := []struct{ name, doc, want string }{
		{"bad cron", base + "cron: \"61 3 * * *\"\n", "line 4: cron: invalid cron expression \"61 3 * * *\""},
		{"cron with six fields", base + "cron: \"0 0 3 * * *\"\n", "cron: invalid cron expression \"0 0 3 * * *\""},
		{"cron that never fires", base + "cron: \"0 0 30 2 *\"\n", "cron: cron expression \"0 0 30 2 *\" never fires"},
		{"time zone inside the expression", base + "cron: \"TZ=Asia/Tokyo 0 3 * * *\"\n", "cron: put the time zone in the timezone key"},
		{"bad timezone", base + "cron: \"@daily\"\ntimezone: Mars/Olympus\n", "line 5: timezone: unknown time zone \"Mars/Olympus\""},
		{"Local timezone", base + "cron: \"@daily\"\ntimezone: Local\n", "timezone: name an IANA time zone"},
		{"timezone without cron", base + "per_pc: once\ntimezone: UTC\n", "timezone: only applies to cron schedules"},
		{"unknown key", base + "cron: \"@daily\"\nstarting_dealine: 1h\n",
			"line 5: starting_dealine: unknown key (expected one of id, job, description, enabled, cron, timezone, per_pc, target, jitter, starting_deadline)"},
		{"unknown key in target", "id: a\njob: b\ncron: \"@daily\"\ntarget: {all: true, group: [x]}\n", "target.group: unknown key (expected one of all, groups, pcs)"},
		{"unknown key in per_pc", base + "per_pc: {every: 6h, jitter: 1m}\n", "per_pc.jitter: unknown key (expected one of every)"},
		{"bad per_pc word", base + "per_pc: twice\n", "per_pc: expected once or {every: <duration>}, got \"twice\""},
		{"bad per_pc interval", base + "per_pc: {every: often}\n", "per_pc.every: invalid duration \"often\""},
		{"per_pc interval too short", base + "per_pc: {every: 30s}\n", "per_pc.every: must be at least 1m, got 30s"},
		{"cron and per_pc", base + "cron: \"@daily\"\nper_pc: once\n", "cron: set either cron or per_pc, not both"},
		{"neither cron nor per_pc", base, "cron: cron or per_pc is required"},
		{"no target", "id: a\njob: b\ncron: \"@daily\"\n", "target: is required"},
		{"bad starting_deadline", base + "cron: \"@daily\"\nstarting_deadline: 1 hour\n", "starting_deadline: invalid duration \"1 hour\""},
		{"enabled not a bool", base + "cron: \"@daily\"\nenabled: sometimes\n", "enabled: expected true or false, got \"sometimes\""},
		{"bad job id", "id: a\njob: clean.up\ncron: \"@daily\"\ntarget: {all: true}\n", "job: job id \"clean.up\" may contain only"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := scheduler.ParseStrict([]byte(c.doc))
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

func TestParseLenientIgnoresUnknownKeys(t *testing.T) {
	s, err := scheduler.ParseLenient([]byte("id: a\njob: b\ncron: \"@daily\"\nowner: ops\ntarget: {all: true, tags: [x]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != "a" || s.Cron != "@daily" || !s.Target.All || !s.Enabled {
		t.Fatalf("%+v", s)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestNextHonoursTheTimeZoneAndDST(t *testing.T) {
	s := scheduler.Schedule{Cron: "0 3 * * *", Timezone: "Europe/Paris"}
	for _, c := range []struct{ after, want string }{
		// Winter: Paris is UTC+1.
		{"2026-03-02T10:00:00Z", "2026-03-03T02:00:00Z"},
		// The night clocks go forward (29 March 2026, 02:00 → 03:00): 03:00 CEST is 01:00 UTC.
		{"2026-03-28T12:00:00Z", "2026-03-29T01:00:00Z"},
		// Summer: UTC+2.
		{"2026-07-01T00:00:00Z", "2026-07-01T01:00:00Z"},
	} {
		after, _ := time.Parse(time.RFC3339, c.after)
		want, _ := time.Parse(time.RFC3339, c.want)
		if got := s.Next(after); !got.Equal(want) {
			t.Errorf("Next(%s) = %s, want %s", c.after, got.Format(time.RFC3339), c.want)
		}
	}
	daily := scheduler.Schedule{Cron: "@daily"}
	if got := daily.Next(time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)); !got.Equal(time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("@daily in UTC: %s", got)
	}
}

func TestParseFreeze(t *testing.T) {
	for v, want := range map[string]bool{
		"true": true, `"true"`: true, `{"frozen": true}`: true, " TRUE\n": true,
		"false": false, `"false"`: false, `{"frozen": false}`: false, "": false,
	} {
		got, err := scheduler.ParseFreeze([]byte(v))
		if err != nil || got != want {
			t.Errorf("ParseFreeze(%q) = %v, %v; want %v", v, got, err, want)
		}
	}
	// Something unrecognised freezes, and says so.
	if got, err := scheduler.ParseFreeze([]byte("yes please")); !got || err == nil {
		t.Errorf("ParseFreeze(yes please) = %v, %v", got, err)
	}
}
