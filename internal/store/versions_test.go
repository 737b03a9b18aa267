package store

import (
	"context"
	"slices"
	"testing"
	"time"
)

func TestVersionCounts(t *testing.T) {
	tests := []struct {
		name string
		hbs  []Heartbeat
		now  time.Time
		want []VersionCount
	}{
		{"no agents", nil, t0, []VersionCount{}},
		{
			// pc1 moved from 1.0 to 1.1: only its newest heartbeat counts.
			// pc4 has been silent for more than 3 × 30 s: offline.
			"most common first, newest heartbeat per PC, online counted",
			[]Heartbeat{
				hb("pc1", "1.0", t0), hb("pc1", "1.1", t0.Add(10*time.Second)),
				hb("pc2", "1.0", t0), hb("pc3", "1.0", t0),
				hb("pc4", "0.9", t0.Add(-5*time.Minute)),
				hb("pc5", "", t0),
			},
			t0.Add(30 * time.Second),
			[]VersionCount{{"1.0", 2, 2}, {"", 1, 1}, {"0.9", 1, 0}, {"1.1", 1, 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTemp(t)
			s.SetClock(func() time.Time { return tt.now })
			if len(tt.hbs) > 0 {
				mustTx(t, s, func(tx *Tx) error { return tx.UpsertHeartbeats(tt.hbs) })
			}
			got, err := s.VersionCounts(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("VersionCounts = %+v, want %+v", got, tt.want)
			}
		})
	}
}
