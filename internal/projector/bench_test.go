package projector_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/projector"
	"github.com/kanade-project/kanade/internal/wire"
)

// BenchmarkResultsIngest measures the results projector end to end: 50,000
// small results are published to RESULTS first (untimed), then each
// iteration times a new projector, with a new consumer and a new SQLite
// file, from its start until every result is committed. The figure is
// results/s. Run:
//
//	go test -run '^$' -bench BenchmarkResultsIngest -benchtime 3x ./internal/projector/
func BenchmarkResultsIngest(b *testing.B) {
	const n = 50_000
	srv := brokertest.Start(b)
	js := srv.JetStream(b)
	publishResults(b, js, n, 10)
	var total time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		st := openStore(b, filepath.Join(b.TempDir(), "bench.db"))
		o := testOptions(js, st)
		o.Streams = []string{wire.StreamResults}
		o.ConsumerPrefix = fmt.Sprintf("bench%d_", i) // a new consumer: delivers from the start
		o.HeartbeatFlush = -1
		o.AckWait = 30 * time.Second
		o.BatchWait = 100 * time.Millisecond
		p, err := projector.New(o)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		b.StartTimer()
		begin := time.Now()
		go func() {
			defer close(done)
			p.Run(ctx)
		}()
		for {
			rs, _ := p.Stats().Stream(wire.StreamResults)
			if rs.Applied >= n {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		took := time.Since(begin)
		total += took
		b.StopTimer()
		cancel()
		<-done
		if got := count(b, st, "results"); got != n {
			b.Fatalf("results = %d, want %d", got, n)
		}
		rs, _ := p.Stats().Stream(wire.StreamResults)
		b.Logf("iteration %d: %d results in %s (%d batches, max %d)", i, n, took.Round(time.Millisecond), rs.Batches, rs.MaxBatch)
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "results/s")
}
