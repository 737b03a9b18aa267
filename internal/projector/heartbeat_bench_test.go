package projector_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/wire"
)

// BenchmarkHeartbeatLag measures how stale the agents table can be with
// 10,000 simulated agents: the projector runs with its default flush
// period and the figure is the largest time from a heartbeat's receipt
// to its commit in SQLite (max_lag_ms), plus the largest single flush.
//
//   - steady: every PC heartbeats once, spread evenly over 30 s (the
//     default interval: about 333 heartbeats/s), as a running fleet does.
//   - storm: every PC heartbeats at once, as after a broker restart.
//
// The simulated agents publish over 20 connections; the projector sees one
// subscription either way, so the connection count does not change what is
// measured here (the fleet simulator measures connections). Run:
//
//	go test -run '^$' -bench BenchmarkHeartbeatLag -benchtime 1x ./internal/projector/
func BenchmarkHeartbeatLag(b *testing.B) {
	const pcs = 10_000
	for _, sc := range []struct {
		name   string
		spread time.Duration
	}{
		{"steady", 30 * time.Second},
		{"storm", 0},
	} {
		b.Run(sc.name, func(b *testing.B) {
			for range b.N {
				lag, flushes := heartbeatLagRun(b, pcs, sc.spread)
				b.ReportMetric(float64(lag.Microseconds())/1000, "max_lag_ms")
				b.ReportMetric(float64(flushes), "flushes")
			}
		})
	}
}

func heartbeatLagRun(b *testing.B, pcs int, spread time.Duration) (time.Duration, uint64) {
	b.StopTimer()
	srv := brokertest.Start(b)
	nc := srv.Connect(b)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	st := openStore(b, filepath.Join(b.TempDir(), "hb.db"))
	o := testOptions(js, st)
	o.HeartbeatFlush = 0 // the default
	r := start(b, o)
	conns := make([]*nats.Conn, 20)
	for i := range conns {
		conns[i] = srv.Connect(b)
	}
	// Wait for the projector's subscription with a probe the projector
	// counts as a decode error.
	deadline := time.Now().Add(10 * time.Second)
	for r.Stats().Heartbeats.DecodeErrors == 0 {
		if time.Now().After(deadline) {
			b.Fatal("heartbeat subscription not live")
		}
		conns[0].Publish(wire.SubjectHeartbeat("probe"), []byte("{"))
		conns[0].Flush()
		time.Sleep(5 * time.Millisecond)
	}
	payloads := make([][]byte, pcs)
	for i := range payloads {
		pc := fmt.Sprintf("pc%05d", i)
		payloads[i], _ = json.Marshal(wire.Heartbeat{
			PCID: pc, At: time.Now().UTC(), AgentVersion: "1.0.0", Hostname: "host-" + pc,
			OSFamily: "windows", Arch: "amd64", HeartbeatIntervalSecs: 30, Groups: []string{"lab"},
		})
	}

	b.StartTimer()
	begin := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	next := 0
	for next < pcs {
		// Publish every PC whose offset in the spread has come.
		due := pcs
		if spread > 0 {
			due = min(pcs, int(float64(pcs)*float64(time.Since(begin))/float64(spread))+1)
		}
		for ; next < due; next++ {
			pc := fmt.Sprintf("pc%05d", next)
			if err := conns[next%len(conns)].Publish(wire.SubjectHeartbeat(pc), payloads[next]); err != nil {
				b.Fatal(err)
			}
		}
		if next < pcs {
			<-tick.C
		}
	}
	tick.Stop()
	for _, c := range conns {
		c.Flush()
	}
	deadline = time.Now().Add(time.Minute)
	for {
		hs := r.Stats().Heartbeats
		if hs.Flushed >= uint64(pcs) && hs.Pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("heartbeats not all flushed: %+v", hs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.StopTimer()
	if n := count(b, st, "agents"); n != int64(pcs) {
		b.Fatalf("agents rows = %d, want %d", n, pcs)
	}
	hs := r.Stats().Heartbeats
	b.Logf("%d heartbeats over %s: %d flushes, max lag %s (receipt to commit)", pcs, spread, hs.Flushes, hs.MaxLag.Round(time.Millisecond))
	r.stop()
	return hs.MaxLag, hs.Flushes
}
