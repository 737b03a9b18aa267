package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/agent"
	"github.com/kanade-project/kanade/internal/server"
	"github.com/kanade-project/kanade/internal/serverconfig"
)

const token = "server-test-token-0123456789"

type running struct {
	natsURL, httpURL string
	stop             func()
}

func startServer(t *testing.T, dataDir, natsListen string) running {
	t.Helper()
	return startServerWith(t, server.Options{DataDir: dataDir, NATSListen: natsListen})
}

// startServerWith runs the server with o (HTTP on a free port, logs
// discarded) until the test ends.
func startServerWith(t *testing.T, o server.Options) running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan [2]string, 1)
	done := make(chan error, 1)
	o.HTTPListen = "127.0.0.1:0"
	o.Logger = slog.New(slog.DiscardHandler)
	o.Ready = func(n, h string) { ready <- [2]string{n, h} }
	go func() { done <- server.Run(ctx, o) }()
	select {
	case u := <-ready:
		stopped := false
		stop := func() {
			if stopped {
				return
			}
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("server: %v", err)
			}
		}
		t.Cleanup(stop)
		return running{natsURL: u[0], httpURL: u[1], stop: stop}
	case err := <-done:
		t.Fatalf("server did not start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("server not ready")
	}
	cancel()
	return running{}
}

func api(t *testing.T, method, url string, body any, out any) int {
	t.Helper()
	var b bytes.Buffer
	if body != nil {
		_ = json.NewEncoder(&b).Encode(body)
	}
	req, _ := http.NewRequest(method, url, &b)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestServerRunsAndRebuildsItsDatabase: a run through the API reaches two
// real agents, their results and timeline appear through the API, and after
// the SQLite file is deleted and the server restarted the same rows come
// back from the streams.
func TestServerRunsAndRebuildsItsDatabase(t *testing.T) {
	t.Setenv(serverconfig.EnvAPIToken, token)
	dataDir := t.TempDir()
	natsListen := freeAddr(t)
	s := startServer(t, dataDir, natsListen)

	for _, id := range []string{"srv-a", "srv-b"} {
		a, err := agent.New(agent.Config{ID: id, NATSURLs: []string{s.natsURL}, DataDir: t.TempDir(), Version: "test", HeartbeatInterval: time.Second, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	var agents struct {
		Agents []struct {
			PCID   string `json:"pc_id"`
			Online bool   `json:"online"`
		} `json:"agents"`
		Total int `json:"total"`
	}
	poll(t, "two online agents", func() bool {
		api(t, "GET", s.httpURL+"/api/agents?online=true", nil, &agents)
		return agents.Total == 2
	})

	var run map[string]string
	if code := api(t, "POST", s.httpURL+"/api/run", map[string]any{"target": map[string]any{"all": true}, "script": "echo from-api"}, &run); code != 202 {
		t.Fatalf("run: %d", code)
	}
	var exec struct {
		Counters struct{ Results, Succeeded int } `json:"counters"`
	}
	poll(t, "both results in the projection", func() bool {
		api(t, "GET", s.httpURL+"/api/executions/"+run["exec_id"], nil, &exec)
		return exec.Counters.Succeeded == 2
	})
	var res struct {
		Results []struct{ Stdout string } `json:"results"`
	}
	api(t, "GET", s.httpURL+"/api/results?exec_id="+run["exec_id"], nil, &res)
	if len(res.Results) != 2 || res.Results[0].Stdout != "from-api\n" {
		t.Fatalf("results = %+v", res.Results)
	}
	counts := func(base string) (results, timeline, audit int) {
		var r struct{ Results []any }
		var tl struct{ Events []any }
		var au struct{ Audit []any }
		api(t, "GET", base+"/api/results?limit=1000", nil, &r)
		api(t, "GET", base+"/api/timeline?limit=1000", nil, &tl)
		api(t, "GET", base+"/api/audit?limit=1000", nil, &au)
		return len(r.Results), len(tl.Events), len(au.Audit)
	}
	var r1, t1, a1 int
	poll(t, "the timeline (agent_online events) and the audit record", func() bool {
		r1, t1, a1 = counts(s.httpURL)
		return t1 >= 2 && a1 >= 1
	})

	s.stop()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		_ = os.Remove(filepath.Join(dataDir, "kanade.db"+suffix))
	}
	s2 := startServer(t, dataDir, natsListen)
	poll(t, "the rebuilt projection", func() bool {
		r2, t2, a2 := counts(s2.httpURL)
		return r2 == r1 && t2 >= t1 && a2 == a1
	})
	poll(t, "agents back from their heartbeats", func() bool {
		api(t, "GET", s2.httpURL+"/api/agents?online=true", nil, &agents)
		return agents.Total == 2
	})
}

func TestServerRefusesToStartWithoutAPICredentials(t *testing.T) {
	t.Setenv(serverconfig.EnvAPIToken, "")
	t.Setenv(serverconfig.EnvJWTSecret, "")
	err := server.Run(context.Background(), server.Options{DataDir: t.TempDir(), NATSListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte(serverconfig.EnvAPIToken)) {
		t.Fatalf("err = %v, want a refusal naming %s", err, serverconfig.EnvAPIToken)
	}
}
