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

// childEnv makes this test binary the backend child (it must not start
// with KANADE_: the bench strips those from the child's environment).
const childEnv = "BENCH_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "backend" {
		os.Exit(bench.BackendMain(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestFlows runs each benchmark end to end with 20 agents — backend child
// included — and checks its summary line: the keys in order, and values
// that make sense together.
func TestFlows(t *testing.T) {
	const n = 20
	tests := []struct {
		name  string
		run   func(context.Context, bench.Options) error
		keys  []string
		check func(t *testing.T, v map[string]float64, raw map[string]string)
	}{
		{
			name: "fanout",
			run:  bench.Fanout,
			keys: []string{"agents", "floor_s", "acked_s", "ratio", "sql_s", "sql_ratio", "p50_ms", "p99_ms", "results",
				"backend_cpu_s", "backend_rss_mib", "backend_peak_rss_mib", "sim_cpu_s", "sim_go_kib_per_agent", "sim_rss_kib_per_agent",
				"stored_floor_s", "stored_floor_ratio", "stored_ratio"},
			check: func(t *testing.T, v map[string]float64, _ map[string]string) {
				positive(t, v, "floor_s", "acked_s", "ratio", "sql_s", "sql_ratio", "sim_go_kib_per_agent",
					"stored_floor_s", "stored_floor_ratio", "stored_ratio")
				if v["results"] != n {
					t.Errorf("results=%v, want %d (each stored once)", v["results"], n)
				}
				// A row is in SQLite only after JetStream stored it.
				if v["sql_s"] < v["acked_s"] {
					t.Errorf("sql_s %v < acked_s %v", v["sql_s"], v["acked_s"])
				}
				if !(v["p50_ms"] <= v["p99_ms"] && v["p99_ms"] <= v["acked_s"]*1000+1) {
					t.Errorf("p50_ms %v, p99_ms %v, acked_s %v out of order", v["p50_ms"], v["p99_ms"], v["acked_s"])
				}
				// The printed seconds are rounded to 0.1 ms: allow for it.
				tol := 0.00005/v["floor_s"] + 0.00005/v["acked_s"] + 0.01
				if r := v["acked_s"] / v["floor_s"]; r < v["ratio"]*(1-tol) || r > v["ratio"]*(1+tol) {
					t.Errorf("ratio %v is not acked_s/floor_s = %v", v["ratio"], r)
				}
			},
		},
		{
			name: "storm",
			run:  bench.Storm,
			keys: []string{"agents", "online_s", "broker_peak_rss_mib", "crashed", "restart_s", "sockets_s", "dials", "backend_cpu_s"},
			check: func(t *testing.T, v map[string]float64, raw map[string]string) {
				if raw["crashed"] != "false" {
					t.Errorf("crashed=%s", raw["crashed"])
				}
				positive(t, v, "online_s", "restart_s", "sockets_s", "dials")
				// Every agent must reconnect, and be seen, well within
				// one heartbeat interval (30 s): the agents send a
				// heartbeat on reconnection.
				if v["online_s"] > 20 || v["sockets_s"] > v["online_s"]+0.2 {
					t.Errorf("online_s %v, sockets_s %v", v["online_s"], v["sockets_s"])
				}
				if v["dials"] < n {
					t.Errorf("dials=%v: fewer than one reconnection per agent", v["dials"])
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var out, log bytes.Buffer
			o := bench.Options{
				Agents:   []int{n},
				Backend:  bench.Command{Path: os.Args[0], Env: []string{childEnv + "=backend"}},
				WorkDir:  t.TempDir(),
				AgentDir: t.TempDir(),
				Timeout:  30 * time.Second,
				Out:      &out,
				Log:      &log,
			}
			err := tc.run(ctx, o)
			t.Logf("progress:\n%s", log.String())
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) != 1 {
				t.Fatalf("want one summary line, got %q", out.String())
			}
			t.Log(lines[0])
			name, keys, raw := parseLine(lines[0])
			if name != tc.name || !slices.Equal(keys, tc.keys) {
				t.Fatalf("line %q: want %s with keys %v", lines[0], tc.name, tc.keys)
			}
			v := map[string]float64{}
			for k, s := range raw {
				if f, err := strconv.ParseFloat(s, 64); err == nil {
					v[k] = f
				}
			}
			if v["agents"] != n {
				t.Errorf("agents=%v, want %d", v["agents"], n)
			}
			tc.check(t, v, raw)
		})
	}
}

func parseLine(line string) (name string, keys []string, vals map[string]string) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return "", nil, nil
	}
	vals = map[string]string{}
	for _, kv := range f[1:] {
		k, v, _ := strings.Cut(kv, "=")
		keys = append(keys, k)
		vals[k] = v
	}
	return f[0], keys, vals
}

func positive(t *testing.T, v map[string]float64, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if !(v[k] > 0) {
			t.Errorf("%s=%v, want > 0", k, v[k])
		}
	}
}
