package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/agent"
	"github.com/kanade-project/kanade/internal/jobs"
	"github.com/kanade-project/kanade/internal/serverconfig"
)

func postYAML(t *testing.T, url, body string, out any) int {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/yaml")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	if out != nil {
		_ = json.Unmarshal(b.Bytes(), out)
	}
	return resp.StatusCode
}

func startAgents(t *testing.T, natsURL string, ids ...string) {
	for _, id := range ids {
		a, err := agent.New(agent.Config{ID: id, NATSURLs: []string{natsURL}, DataDir: t.TempDir(), Version: "test", HeartbeatInterval: time.Second, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
}

// TestJobsAndWavesThroughTheAPI: a manifest is validated strictly, an exec
// with two waves holds the second until its delay, and a failing first wave
// stops the second.
func TestJobsAndWavesThroughTheAPI(t *testing.T) {
	t.Setenv(serverconfig.EnvAPIToken, token)
	s := startServer(t, t.TempDir(), freeAddr(t))
	startAgents(t, s.natsURL, "w-canary", "w-main")
	for pc, g := range map[string]string{"w-canary": "canary", "w-main": "main"} {
		if code := api(t, "PUT", s.httpURL+"/api/agents/"+pc+"/groups", map[string]any{"groups": []string{g}, "revision": 0}, nil); code != 200 {
			t.Fatalf("groups %s: %d", pc, code)
		}
	}
	// Both agents joined their group (the agent reports it).
	poll(t, "group membership", func() bool {
		ok := true
		for pc, g := range map[string]string{"w-canary": "canary", "w-main": "main"} {
			var rep struct{ Groups []string }
			if api(t, "GET", s.httpURL+"/api/agents/"+pc+"/config", nil, &rep) != 200 || len(rep.Groups) != 1 || rep.Groups[0] != g {
				ok = false
			}
		}
		return ok
	})

	var bad map[string]map[string]string
	if code := postYAML(t, s.httpURL+"/api/jobs", "id: hello\nversion: \"1\"\nexecute:\n  shell: sh\n  scirpt: echo hi\n", &bad); code != 400 || bad["error"]["code"] != "invalid_manifest" || !strings.Contains(bad["error"]["message"], "execute.scirpt") {
		t.Fatalf("unknown key: %d %v", code, bad)
	}
	for _, m := range []string{
		"id: hello\nversion: \"1\"\nexecute:\n  shell: sh\n  script: echo hello-from-job\n",
		"id: broken\nversion: \"1\"\nexecute:\n  shell: sh\n  script: exit 3\n",
	} {
		if code := postYAML(t, s.httpURL+"/api/jobs", m, nil); code != 200 {
			t.Fatalf("create job: %d", code)
		}
	}

	type execution struct {
		Execution struct {
			ExecID string `json:"exec_id"`
			Waves  []struct {
				State  string `json:"state"`
				Reason string `json:"reason"`
			} `json:"waves"`
		} `json:"execution"`
		Counters struct{ Results, Succeeded, Failed int } `json:"counters"`
	}
	start := func(job string) string {
		var x struct {
			ExecID string `json:"exec_id"`
		}
		plan := map[string]any{"rollout": map[string]any{"waves": []map[string]any{{"group": "canary"}, {"group": "main", "delay": "3s"}}, "stop_if_failed_pct": 0}}
		if code := api(t, "POST", s.httpURL+"/api/exec", map[string]any{"job": job, "plan": plan}, &x); code != 202 || x.ExecID == "" {
			t.Fatalf("exec %s: %d %+v", job, code, x)
		}
		return x.ExecID
	}

	good := start("hello")
	var x execution
	poll(t, "the canary result", func() bool {
		api(t, "GET", s.httpURL+"/api/exec/"+good, nil, &x)
		return x.Counters.Succeeded == 1
	})
	if x.Counters.Results != 1 {
		t.Fatalf("second wave ran before its delay: %+v", x.Counters)
	}
	poll(t, "the second wave after its delay", func() bool {
		api(t, "GET", s.httpURL+"/api/exec/"+good, nil, &x)
		return x.Counters.Succeeded == 2
	})

	bad2 := start("broken")
	poll(t, "the failing canary", func() bool {
		api(t, "GET", s.httpURL+"/api/exec/"+bad2, nil, &x)
		return x.Counters.Failed == 1
	})
	poll(t, "the second wave to be stopped", func() bool {
		api(t, "GET", s.httpURL+"/api/exec/"+bad2, nil, &x)
		return len(x.Execution.Waves) == 2 && x.Execution.Waves[1].State == jobs.WaveStopped
	})
	if x.Counters.Results != 1 {
		t.Fatalf("the stopped wave ran anyway: %+v", x.Counters)
	}
}
