package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/serverconfig"
	"github.com/kanade-project/kanade/internal/wire"
)

// jobResults counts the results of job in the projection.
func jobResults(t *testing.T, base, marker string) int {
	var r struct {
		Results []struct{ Stdout string } `json:"results"`
	}
	api(t, "GET", base+"/api/results?limit=1000", nil, &r)
	n := 0
	for _, x := range r.Results {
		if strings.Contains(x.Stdout, marker) {
			n++
		}
	}
	return n
}

// TestPerPCOnceSchedulesSurviveARestartAndFreezeBlocksThem: a per_pc:
// once schedule runs its job once on each PC, not again after a server
// restart; with the fleet frozen a new schedule does not fire until thawed.
func TestPerPCOnceSchedulesSurviveARestartAndFreezeBlocksThem(t *testing.T) {
	t.Setenv(serverconfig.EnvAPIToken, token)
	dataDir, natsListen := t.TempDir(), freeAddr(t)
	s := startServer(t, dataDir, natsListen)
	startAgents(t, s.natsURL, "sch-a", "sch-b")
	var agents struct{ Total int }
	poll(t, "two agents in the projection", func() bool {
		api(t, "GET", s.httpURL+"/api/agents", nil, &agents)
		return agents.Total == 2
	})
	for _, m := range []string{
		"id: once-job\nversion: \"1\"\nexecute:\n  shell: sh\n  script: echo ran-once-job\n",
		"id: frozen-job\nversion: \"1\"\nexecute:\n  shell: sh\n  script: echo ran-frozen-job\n",
	} {
		if code := postYAML(t, s.httpURL+"/api/jobs", m, nil); code != 200 {
			t.Fatalf("job: %d", code)
		}
	}
	var bad map[string]map[string]string
	if code := postYAML(t, s.httpURL+"/api/schedules", "id: bad\njob: once-job\ncron: \"61 * * * *\"\ntarget: {all: true}\n", &bad); code != 400 || bad["error"]["code"] != "invalid_schedule" {
		t.Fatalf("bad cron: %d %v", code, bad)
	}
	if code := postYAML(t, s.httpURL+"/api/schedules", "id: once\njob: once-job\nper_pc: once\ntarget: {all: true}\n", nil); code != 200 {
		t.Fatalf("schedule: %d", code)
	}
	poll(t, "the job on both PCs", func() bool { return jobResults(t, s.httpURL, "ran-once-job") == 2 })

	s.stop()
	s = startServer(t, dataDir, natsListen)
	// The restarted scheduler takes the lease and reconciles; give it the
	// time of a lease takeover plus a reconcile before asserting absence.
	nc, err := nats.Connect(s.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	fleet, err := js.KeyValue(context.Background(), wire.BucketFleetConfig)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fleet.Put(context.Background(), "freeze", []byte("true")); err != nil {
		t.Fatal(err)
	}
	if code := postYAML(t, s.httpURL+"/api/schedules", "id: frozen\njob: frozen-job\nper_pc: once\ntarget: {all: true}\n", nil); code != 200 {
		t.Fatalf("schedule: %d", code)
	}
	time.Sleep(10 * time.Second) // an observation window for things that must NOT happen
	if n := jobResults(t, s.httpURL, "ran-once-job"); n != 2 {
		t.Fatalf("per_pc once ran %d times after the restart, want still 2", n)
	}
	if n := jobResults(t, s.httpURL, "ran-frozen-job"); n != 0 {
		t.Fatalf("a schedule fired %d times while the fleet was frozen", n)
	}
	if _, err := fleet.Put(context.Background(), "freeze", []byte("false")); err != nil {
		t.Fatal(err)
	}
	// The scheduler watches the freeze key: per_pc catches up on the thaw,
	// not at the next reconcile (a minute later).
	deadline := time.Now().Add(30 * time.Second)
	for jobResults(t, s.httpURL, "ran-frozen-job") != 2 {
		if time.Now().After(deadline) {
			t.Fatal("the thawed schedule never fired")
		}
		time.Sleep(200 * time.Millisecond)
	}
}
