package bench_test

import (
	"bytes"
	"context"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/bench"
)

// TestFootprint runs the footprint benchmark end to end: the agent and
// its Windows twin built from this module (go test puts its own go first
// on PATH), the backend child, one real kanade-agent process with 1 s
// heartbeats (so the 2 s window must see some), /proc sampling.
func TestFootprint(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the footprint is read from /proc")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, log bytes.Buffer
	o := bench.FootprintOptions{
		Backend:   bench.Command{Path: os.Args[0], Env: []string{childEnv + "=backend"}},
		Duration:  2 * time.Second,
		Heartbeat: time.Second,
		WorkDir:   t.TempDir(),
		// The first build of the stripped agents (nothing cached) is
		// what takes time here.
		Timeout: 150 * time.Second,
		Out:     &out,
		Log:     &log,
	}
	begin := time.Now()
	err := bench.Footprint(ctx, o)
	t.Logf("progress (%s):\n%s", time.Since(begin).Round(time.Millisecond), log.String())
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one summary line, got %q", out.String())
	}
	t.Log(lines[0])
	v, _ := summary(t, lines[0], "footprint", []string{"idle_secs", "rss_mib", "cpu_pct", "binary_linux_mib", "binary_windows_mib", "rss_max_mib", "hwm_mib", "heartbeats"})
	if v["idle_secs"] != 2 {
		t.Errorf("idle_secs=%v, want 2", v["idle_secs"])
	}
	positive(t, v, "rss_mib", "binary_linux_mib", "binary_windows_mib", "heartbeats")
	// Sane bounds, not the targets: this test must not fail on a busy
	// machine; BENCHMARKS.md has the real figures.
	if v["rss_mib"] > 200 || v["binary_linux_mib"] > 100 || v["binary_windows_mib"] > 100 {
		t.Errorf("rss_mib %v, binaries %v/%v MiB: implausible", v["rss_mib"], v["binary_linux_mib"], v["binary_windows_mib"])
	}
	if _, ok := v["cpu_pct"]; !ok || v["cpu_pct"] < 0 || v["cpu_pct"] > 100 {
		t.Errorf("cpu_pct=%v", v["cpu_pct"])
	}
	if !(v["rss_mib"] <= v["rss_max_mib"] && v["rss_max_mib"] <= v["hwm_mib"]) {
		t.Errorf("rss_mib %v, rss_max_mib %v, hwm_mib %v out of order", v["rss_mib"], v["rss_max_mib"], v["hwm_mib"])
	}
	// One heartbeat a second over two seconds; a slow machine may
	// publish one late, none would mean the agent is not running.
	if v["heartbeats"] > 4 {
		t.Errorf("heartbeats=%v in 2 s at 1 s intervals", v["heartbeats"])
	}
}
