package serverconfig

import (
	"strings"
	"testing"
	"time"
)

const day = 24 * time.Hour

func TestRetentionTable(t *testing.T) {
	type ages = map[string]time.Duration
	defaults := ages{"results": 90 * day, "started": 7 * day, "timeline": 30 * day, "inventory_history": 180 * day, "audit": 365 * day}
	for _, tc := range []struct {
		name     string
		toml     string
		want     ages // only the tables that differ from defaults
		interval time.Duration
		batch    int
		err      []string // substrings of the error; nil: no error
	}{
		{name: "no table: defaults", toml: ``, interval: time.Hour, batch: 1000},
		{name: "empty table: defaults", toml: "[retention]\n", interval: time.Hour, batch: 1000},
		{name: "every key", toml: `[retention]
results = "30d"
started = "36h"
timeline = "off"
inventory_history = "0"
audit = "400d"
interval = "15m"
batch_size = 250`,
			want:     ages{"results": 30 * day, "started": 36 * time.Hour, "timeline": 0, "inventory_history": 0, "audit": 400 * day},
			interval: 15 * time.Minute, batch: 250},
		{name: "OFF and 0d disable too", toml: "[retention]\nresults = \"OFF\"\naudit = \"0d\"", want: ages{"results": 0, "audit": 0}, interval: time.Hour, batch: 1000},
		{name: "short audit when explicit", toml: "[retention]\naudit = \"30d\"\nallow_short_audit = true", want: ages{"audit": 30 * day}, interval: time.Hour, batch: 1000},

		{name: "bad unit", toml: "[retention]\nresults = \"90x\"", err: []string{`[retention] results = "90x"`, `"off"`}},
		{name: "negative", toml: "[retention]\ntimeline = \"-1d\"", err: []string{`[retention] timeline = "-1d"`, "negative"}},
		{name: "minutes for days", toml: "[retention]\nstarted = \"30m\"", err: []string{`[retention] started = "30m"`, "unit mistake"}},
		{name: "audit below the floor", toml: "[retention]\naudit = \"30d\"", err: []string{`[retention] audit = "30d"`, "90d floor", "allow_short_audit = true"}},
		{name: "interval too short", toml: "[retention]\ninterval = \"10s\"", err: []string{`[retention] interval = "10s"`, "1m to 24h"}},
		{name: "interval not a duration", toml: "[retention]\ninterval = \"hourly\"", err: []string{`[retention] interval = "hourly"`}},
		{name: "batch size", toml: "[retention]\nbatch_size = -5", err: []string{"[retention] batch_size = -5"}},
		{name: "batch size too large", toml: "[retention]\nbatch_size = 1000000", err: []string{"[retention] batch_size = 1000000"}},
		{name: "unknown key", toml: "[retention]\nresult = \"30d\"", err: []string{"unknown key", `result = "30d"`}},
		{name: "a number, not a string", toml: "[retention]\nresults = 90", err: []string{"retention.results: "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.toml))
			if tc.err != nil {
				if err == nil {
					t.Fatalf("parsed %+v, want an error", c.Retention)
				}
				for _, want := range tc.err {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q lacks %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			p, err := c.Retention.Policy()
			if err != nil {
				t.Fatal(err)
			}
			if p.Interval != tc.interval || p.BatchSize != tc.batch {
				t.Errorf("interval %v batch %d, want %v %d", p.Interval, p.BatchSize, tc.interval, tc.batch)
			}
			if len(p.Tables) != len(defaults) {
				t.Fatalf("tables = %+v, want all of %v", p.Tables, defaults)
			}
			for _, tr := range p.Tables {
				want, ok := tc.want[tr.Table]
				if !ok {
					want = defaults[tr.Table]
				}
				if tr.MaxAge != want {
					t.Errorf("%s max age %v, want %v", tr.Table, tr.MaxAge, want)
				}
			}
		})
	}
}

func TestDefaultHasTheRetentionDefaults(t *testing.T) {
	p, err := Default().Retention.Policy()
	if err != nil || p.Interval != DefaultRetentionInterval || p.BatchSize != DefaultRetentionBatchSize || len(p.Tables) != 5 {
		t.Fatalf("default policy %+v, %v", p, err)
	}
}
