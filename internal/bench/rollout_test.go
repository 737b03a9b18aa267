package bench_test

import (
	"bytes"
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/bench"
)

// summary parses a summary line of the named benchmark, checks its keys
// (in order), and returns its values as numbers (where they are) and as
// text.
func summary(t *testing.T, line, name string, keys []string) (map[string]float64, map[string]string) {
	t.Helper()
	got, gotKeys, raw := parseLine(line)
	if got != name || !slices.Equal(gotKeys, keys) {
		t.Fatalf("line %q: want %s with keys %v", line, name, keys)
	}
	v := map[string]float64{}
	for k, s := range raw {
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			v[k] = f
		}
	}
	return v, raw
}

// TestRollout runs the rollout benchmark end to end — backend child with
// its monitoring port, a signed 1 MiB release, five downloaders on their
// own connections — with jitter 0 and 1 s, and checks that the figures
// hold together: every byte delivered to every downloader (the broker's
// egress is at least N × size, and not much more), downloads no longer
// than the rollout.
func TestRollout(t *testing.T) {
	const n = 5
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, log bytes.Buffer
	o := bench.RolloutOptions{
		Options: bench.Options{
			Agents:  []int{n},
			Backend: bench.Command{Path: os.Args[0], Env: []string{childEnv + "=backend"}},
			WorkDir: t.TempDir(),
			Timeout: 30 * time.Second,
			Out:     &out,
			Log:     &log,
		},
		Size:    1 << 20,
		Jitters: []time.Duration{0, time.Second},
	}
	err := bench.Rollout(ctx, o)
	t.Logf("progress:\n%s", log.String())
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want two summary lines (one per jitter), got %q", out.String())
	}
	keys := []string{"agents", "jitter_s", "size_mib", "total_s", "peak_concurrent", "egress_mib", "broker_peak_rss_mib",
		"egress_ratio", "download_p50_s", "download_p99_s", "retries", "backend_cpu_s", "downloaders_peak_rss_mib"}
	for i, jitter := range []float64{0, 1} {
		t.Log(lines[i])
		v, _ := summary(t, lines[i], "rollout", keys)
		if v["agents"] != n || v["jitter_s"] != jitter || v["size_mib"] != 1 {
			t.Errorf("agents=%v jitter_s=%v size_mib=%v, want %d %v 1", v["agents"], v["jitter_s"], v["size_mib"], n, jitter)
		}
		positive(t, v, "total_s", "peak_concurrent", "egress_mib", "broker_peak_rss_mib", "download_p50_s", "downloaders_peak_rss_mib")
		if v["peak_concurrent"] > n {
			t.Errorf("peak_concurrent=%v with %d downloaders", v["peak_concurrent"], n)
		}
		// out_bytes counts headers and the backend's own messages too,
		// so a little over 1; a second copy of anything would be 2.
		if v["egress_ratio"] < 1 || v["egress_ratio"] > 1.5 {
			t.Errorf("egress_ratio=%v, want 1 to 1.5", v["egress_ratio"])
		}
		if !(v["download_p50_s"] <= v["download_p99_s"] && v["download_p99_s"] <= v["total_s"]) {
			t.Errorf("download_p50_s %v, download_p99_s %v, total_s %v out of order", v["download_p50_s"], v["download_p99_s"], v["total_s"])
		}
		if v["total_s"] > jitter+20 {
			t.Errorf("total_s=%v: five 1 MiB downloads should not take that long", v["total_s"])
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"12MiB": 12 << 20, "1 MiB": 1 << 20, "512KiB": 512 << 10, "1.5m": 3 << 19, "100": 100, "2GB": 2 << 30} {
		got, err := bench.ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "12TiB", "-1", "0", "1.2.3"} {
		if _, err := bench.ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}
