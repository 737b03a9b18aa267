package store

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"
)

// hbAt is a heartbeat of pc on os with interval secs (0: the default 30 s).
func hbAt(pc, os, version string, seen time.Time, secs int) Heartbeat {
	h := hb(pc, version, seen)
	h.OSFamily, h.HeartbeatIntervalSecs = os, secs
	return h
}

func TestFleetHealth(t *testing.T) {
	now := t0.Add(30 * 24 * time.Hour)
	week := StaleAfter
	tests := []struct {
		name                 string
		hbs                  []Heartbeat
		online, offline, stl int
		byOS                 map[string]int
		byVersion            []VersionCount
	}{
		{"no agents", nil, 0, 0, 0, map[string]int{}, []VersionCount{}},
		{
			"online, offline, stale at exactly 7 days and beyond",
			[]Heartbeat{
				hbAt("on-1", "linux", "1.1", now.Add(-10*time.Second), 0),
				hbAt("on-2", "windows", "1.1", now.Add(-time.Minute), 60),
				// Offline for a day: offline, not stale.
				hbAt("off-1", "windows", "1.0", now.Add(-24*time.Hour), 0),
				// One millisecond short of a week: still only offline.
				hbAt("off-2", "linux", "1.0", now.Add(-week+time.Millisecond), 0),
				// A week to the millisecond, and a month: stale.
				hbAt("stale-1", "windows", "1.0", now.Add(-week), 0),
				hbAt("stale-2", "", "", now.Add(-29*24*time.Hour), 0),
			},
			2, 4, 2,
			map[string]int{"linux": 2, "windows": 3, "": 1},
			[]VersionCount{{"1.0", 3, 0}, {"1.1", 2, 2}, {"", 1, 0}},
		},
		{
			// Three heartbeats of 3 days each have not passed since 8 days
			// ago: online, so not stale however long it has been silent.
			"silent a week but online by its own interval",
			[]Heartbeat{hbAt("slow", "darwin", "1.1", now.Add(-8*24*time.Hour), 3*24*3600)},
			1, 0, 0,
			map[string]int{"darwin": 1},
			[]VersionCount{{"1.1", 1, 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s := openTemp(t)
			s.SetClock(func() time.Time { return now })
			if len(tt.hbs) > 0 {
				mustTx(t, s, func(tx *Tx) error { return tx.UpsertHeartbeats(tt.hbs) })
			}
			h, err := s.FleetHealth(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if h.Online != tt.online || h.Offline != tt.offline || h.Stale != tt.stl {
				t.Errorf("online/offline/stale = %d/%d/%d, want %d/%d/%d", h.Online, h.Offline, h.Stale, tt.online, tt.offline, tt.stl)
			}
			if !maps.Equal(h.ByOS, tt.byOS) {
				t.Errorf("by os = %v, want %v", h.ByOS, tt.byOS)
			}
			if !slices.Equal(h.ByVersion, tt.byVersion) {
				t.Errorf("by version = %+v, want %+v", h.ByVersion, tt.byVersion)
			}
			// The same figures as the separate queries, on a quiet database.
			on, off, err := s.AgentCounts(ctx)
			if err != nil {
				t.Fatal(err)
			}
			vc, err := s.VersionCounts(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if on != h.Online || off != h.Offline || !slices.Equal(vc, h.ByVersion) {
				t.Errorf("AgentCounts %d/%d and VersionCounts %+v disagree with %+v", on, off, vc, h)
			}
		})
	}
}
