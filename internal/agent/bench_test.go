//go:build !windows

package agent_test

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/agent"
	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/fleetclient"
	"github.com/kanade-project/kanade/internal/wire"
)

// reportPercentiles adds p50 and p90 of the per-iteration durations.
func reportPercentiles(b *testing.B, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(d[len(d)*9/10].Microseconds())/1000, "p90-ms")
}

// BenchmarkBareSpawn is the floor of BenchmarkCommandRoundTrip: spawning
// `sh -c true` with os/exec and waiting for it.
func BenchmarkBareSpawn(b *testing.B) {
	var d []time.Duration
	for b.Loop() {
		start := time.Now()
		if err := exec.Command("sh", "-c", "true").Run(); err != nil {
			b.Fatal(err)
		}
		d = append(d, time.Since(start))
	}
	reportPercentiles(b, d)
}

// BenchmarkCommandRoundTrip measures, from an already connected client,
// publishing a Command for `sh -c true` through JetStream and receiving its
// ExecResult after the agent's own PubAck.
func BenchmarkCommandRoundTrip(b *testing.B) {
	srv := brokertest.Start(b)
	startAgentB(b, "bench-pc", srv.URL())
	benchRoundTrip(b, srv)
}

// BenchmarkCommandRoundTripTmpfs is the same with the agent's outbox and
// ledger on tmpfs (/dev/shm), where fsync is free: the difference to
// BenchmarkCommandRoundTrip is the price of the durability guarantees on
// this machine's disk.
func BenchmarkCommandRoundTripTmpfs(b *testing.B) {
	if _, err := os.Stat("/dev/shm"); err != nil {
		b.Skip("no /dev/shm")
	}
	dir, err := os.MkdirTemp("/dev/shm", "kanade-bench-")
	if err != nil {
		b.Skip(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	srv := brokertest.Start(b)
	startAgentWith(b, agent.Config{ID: "bench-pc", NATSURLs: []string{srv.URL()}, DataDir: dir})
	benchRoundTrip(b, srv)
}

func benchRoundTrip(b *testing.B, srv *brokertest.Server) {
	c, err := fleetclient.New(srv.Connect(b))
	if err != nil {
		b.Fatal(err)
	}
	waitPingB(b, c, "bench-pc")
	cmd := wire.Command{Shell: wire.ShellSh, Script: "true"}
	var d []time.Duration
	for b.Loop() {
		start := time.Now()
		ex, err := c.Start(context.Background(), fleetclient.Target{PC: "bench-pc"}, cmd)
		if err != nil {
			b.Fatal(err)
		}
		select {
		case r := <-ex.Results:
			if r.ExitCode != 0 {
				b.Fatalf("result %+v", r)
			}
		case <-time.After(30 * time.Second):
			b.Fatal("no result")
		}
		d = append(d, time.Since(start))
		ex.Close()
	}
	reportPercentiles(b, d)
}
