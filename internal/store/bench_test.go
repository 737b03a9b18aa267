package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/wire"
)

// BenchmarkUpsertResults measures the store alone: batches of 500 new
// results per transaction.
//
//	go test -run '^$' -bench BenchmarkUpsertResults ./internal/store/
func BenchmarkUpsertResults(b *testing.B) {
	s := openTemp(b)
	const batch = 500
	seq := uint64(0)
	b.ResetTimer()
	for b.Loop() {
		mustTx(b, s, func(tx *Tx) error {
			for range batch {
				seq++
				r := wire.ExecResult{ResultID: fmt.Sprintf("res-%09d", seq), RequestID: "req", ExecID: fmt.Sprint("exec", seq%10),
					PCID: fmt.Sprintf("PC-%05d", seq%10000), Stdout: "ok\n", StartedAt: t0, FinishedAt: t0.Add(time.Duration(seq) * time.Millisecond)}
				if err := tx.UpsertResult(r, seq); err != nil {
					return err
				}
			}
			return nil
		})
	}
	b.ReportMetric(float64(seq)/b.Elapsed().Seconds(), "results/s")
}

// BenchmarkListAgents10k lists pages of a 10,000-agent fleet with the
// filters the API offers.
//
//	go test -run '^$' -bench BenchmarkListAgents10k ./internal/store/
func BenchmarkListAgents10k(b *testing.B) {
	s := openTemp(b)
	now := t0.Add(time.Hour)
	s.SetClock(func() time.Time { return now })
	var hbs []Heartbeat
	for i := range 10_000 {
		h := hb(fmt.Sprintf("PC-%05d", i), fmt.Sprintf("1.%d.0", i%4), now.Add(-time.Duration(i%300)*time.Second))
		h.OSFamily = []string{"windows", "linux"}[i%2]
		h.Groups = []string{fmt.Sprint("site", i%20), "all"}
		hbs = append(hbs, h)
	}
	mustTx(b, s, func(tx *Tx) error { return tx.UpsertHeartbeats(hbs) })
	if _, err := s.w.Exec(`ANALYZE`); err != nil {
		b.Fatal(err)
	}
	on := true
	for name, f := range map[string]AgentFilter{
		"first_page":      {Limit: 100},
		"last_page":       {Limit: 100, Offset: 9900},
		"online":          {Online: &on, Limit: 100},
		"version_sorted":  {Version: "1.2.0", Sort: "-last_seen", Limit: 100},
		"group":           {Group: "site7", Limit: 100},
		"query":           {Query: "pc-0999", Limit: 100},
		"os_hostname_asc": {OS: "linux", Sort: "hostname", Limit: 100, Offset: 2000},
	} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, _, err := s.ListAgents(context.Background(), f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
