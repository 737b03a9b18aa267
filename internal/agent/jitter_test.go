//go:build !windows

package agent_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/agent"
	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/release"
	"github.com/kanade-project/kanade/internal/wire"
)

// TestUpdateJitterSpreadsDownloads: 50 agents see one rollout with a 20 s
// jitter; their downloads start spread over the window, not together.
func TestUpdateJitterSpreadsDownloads(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out a 20 s jitter window")
	}
	const agents = 50
	const window = 20 * time.Second
	srv := brokertest.Start(t)
	js := srv.JetStream(t)

	// The "release" is a script that answers --version, so the smoke test
	// before the swap passes; each agent swaps it over its own copy.
	dir := t.TempDir()
	script := filepath.Join(dir, "release.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho 2.0.0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := release.Publish(context.Background(), js, release.PublishOptions{Path: script, Version: "2.0.0", OS: runtime.GOOS, Arch: runtime.GOARCH}); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var starts []time.Time
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); wg.Wait() })
	healthy := make(chan struct{}, agents)
	for i := range agents {
		exe := filepath.Join(dir, fmt.Sprintf("agent-%d", i), "kanade-agent")
		if err := os.MkdirAll(filepath.Dir(exe), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(exe, []byte("#!/bin/sh\necho 1.0.0\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		a, err := agent.New(agent.Config{
			ID: fmt.Sprintf("jit-%02d", i), NATSURLs: []string{srv.URL()}, DataDir: filepath.Join(dir, fmt.Sprintf("data-%d", i)),
			Version: "1.0.0", Logger: slog.New(slog.NewTextHandler(&healthWatch{ch: healthy}, nil)),
			SelfUpdate: &agent.SelfUpdate{Exe: exe, HealthyAfter: 100 * time.Millisecond, OnDownload: func(string) {
				mu.Lock()
				starts = append(starts, time.Now())
				mu.Unlock()
			}},
		})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := a.Run(ctx); err != nil && !errors.Is(err, agent.ErrRestart) {
				t.Errorf("agent: %v", err)
			}
		})
	}
	for range agents {
		select {
		case <-healthy:
		case <-time.After(60 * time.Second):
			t.Fatal("agents did not become healthy")
		}
	}
	kv, err := js.KeyValue(context.Background(), wire.BucketAgentConfig)
	if err != nil {
		t.Fatal(err)
	}
	rolledOut := time.Now()
	if _, err := kv.Put(context.Background(), wire.ConfigKeyGlobal, []byte(`{"target_version":"2.0.0","target_version_jitter":"20s"}`)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(window + 30*time.Second)
	for {
		mu.Lock()
		n := len(starts)
		mu.Unlock()
		if n == agents {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d agents started a download", n, agents)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	slices.SortFunc(starts, func(a, b time.Time) int { return a.Compare(b) })
	spread := starts[len(starts)-1].Sub(starts[0])
	buckets := map[int]int{}
	for _, s := range starts {
		buckets[int(s.Sub(rolledOut)/(2*time.Second))]++
	}
	busiest := 0
	for _, n := range buckets {
		busiest = max(busiest, n)
	}
	t.Logf("downloads spread over %s; %d two-second buckets used, busiest holds %d of %d", spread.Round(time.Millisecond), len(buckets), busiest, agents)
	// Uniform over 20 s, 50 draws: the range is almost surely > 15 s and
	// no 2 s bucket holds anything near 40 %. Together they would fail.
	if spread < window/2 {
		t.Errorf("downloads spread over only %s of a %s jitter window", spread, window)
	}
	if busiest > agents*2/5 {
		t.Errorf("%d of %d downloads started in one 2 s bucket: not spread", busiest, agents)
	}
}

// healthWatch signals each "kept as last-good" log line.
type healthWatch struct{ ch chan struct{} }

func (h *healthWatch) Write(p []byte) (int, error) {
	if bytesContains(p, "kept as last-good") {
		h.ch <- struct{}{}
	}
	return len(p), nil
}

func bytesContains(p []byte, s string) bool { return strings.Contains(string(p), s) }
