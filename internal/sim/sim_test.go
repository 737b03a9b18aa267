package sim_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/fleetclient"
	"github.com/kanade-project/kanade/internal/sim"
	"github.com/kanade-project/kanade/internal/wire"
)

const (
	nAgents = 50
	nGroups = 5
)

// TestFleet runs 50 real agents against a real broker: every one answers a
// survey with its group, a broadcast and a group command reach exactly
// their agents, each result is stored in RESULTS exactly once, and the
// report accounts for every agent.
func TestFleet(t *testing.T) {
	srv := brokertest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f, err := sim.Start(ctx, sim.Options{
		Agents: nAgents, Groups: nGroups, NATSURLs: []string{srv.URL()},
		Exec: sim.ExecEcho, DataDir: t.TempDir(), Ramp: 500,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	if err := f.WaitStarted(ctx); err != nil {
		t.Fatal(err)
	}

	c, err := fleetclient.New(srv.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	waitSurvey(ctx, t, c, f.IDs())

	rep := f.Report()
	if rep.Started != nAgents || rep.Connected != nAgents || rep.Failed != 0 {
		t.Errorf("report %+v: want %d started and connected, none failed", rep, nAgents)
	}
	if rep.HeapInuse == 0 || rep.StackInuse == 0 || rep.PerAgentGo() == 0 {
		t.Errorf("report without memory figures: %+v", rep)
	}
	for _, key := range []string{"sim agents=50 ", " connected=50 ", " go_kib_per_agent=", " rss_kib_per_agent="} {
		if !strings.Contains(rep.String(), key) {
			t.Errorf("report line %q lacks %q", rep.String(), key)
		}
	}
	t.Log(rep)

	js := srv.JetStream(t)
	tests := []struct {
		name   string
		target fleetclient.Target
		want   []string
	}{
		{"broadcast", fleetclient.Target{All: true}, f.IDs()},
		{"group", fleetclient.Target{Group: sim.GroupName(2)}, everyNth(f.IDs(), 2, nGroups)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := fleetclient.Prepare(wire.Command{Script: "hello " + tc.name})
			if err := c.Publish(ctx, tc.target, cmd); err != nil {
				t.Fatal(err)
			}
			got := results(ctx, t, js, cmd.RequestID, len(tc.want))
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("results from %v, want %v", got, tc.want)
			}
		})
	}
	if err := f.Err(); err != nil {
		t.Fatal(err)
	}
}

// waitSurvey surveys until every id answered with a group.
func waitSurvey(ctx context.Context, t *testing.T, c *fleetclient.Client, ids []string) {
	t.Helper()
	for {
		hbs, err := c.Survey(ctx, 300*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		ready := map[string]bool{}
		for _, hb := range hbs {
			if len(hb.Groups) == 1 {
				ready[hb.PCID] = true
			}
		}
		if len(ready) == len(ids) {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("only %d of %d agents answered a survey with their group", len(ready), len(ids))
		}
	}
}

// results reads every result of a request from RESULTS once want are
// stored, checking that none is stored twice (by result_id or by PC).
func results(ctx context.Context, t *testing.T, js jetstream.JetStream, requestID string, want int) []string {
	t.Helper()
	subj := wire.SubjectResultsOfRequest(requestID)
	s, err := js.Stream(ctx, wire.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}})
	if err != nil {
		t.Fatal(err)
	}
	var pcs []string
	seen := map[string]bool{}
	for len(pcs) < want {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("after %d of %d results: %v", len(pcs), want, err)
		}
		var r wire.ExecResult
		if err := json.Unmarshal(m.Data(), &r); err != nil {
			t.Fatal(err)
		}
		if seen[r.ResultID] || seen[r.PCID] {
			t.Fatalf("result stored twice: %+v", r)
		}
		seen[r.ResultID], seen[r.PCID] = true, true
		if r.ExitCode != 0 || !strings.HasPrefix(r.Stdout, "hello ") {
			t.Errorf("result %+v: want exit 0 and the script echoed", r)
		}
		pcs = append(pcs, r.PCID)
	}
	// Nothing beyond: the subject holds exactly want messages.
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, count := range info.State.Subjects {
		n += count
	}
	if n != uint64(want) {
		t.Fatalf("%s holds %d messages, want %d", subj, n, want)
	}
	return pcs
}

func everyNth(ids []string, first, n int) []string {
	var out []string
	for i := first; i < len(ids); i += n {
		out = append(out, ids[i])
	}
	return out
}
