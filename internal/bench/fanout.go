package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/fleetclient"
	"github.com/kanade-project/kanade/internal/sim"
	"github.com/kanade-project/kanade/internal/wire"
)

// FanoutResult is one fan-out measurement. Its String is the summary line
// (keys in this order):
//
//	fanout agents=N floor_s= acked_s= ratio= sql_s= sql_ratio= p50_ms= p99_ms=
//	       results= backend_cpu_s= backend_rss_mib= backend_peak_rss_mib=
//	       sim_cpu_s= sim_go_kib_per_agent= sim_rss_kib_per_agent=
//	       stored_floor_s= stored_floor_ratio= stored_ratio=
//
// floor_s is the median of the floor rounds; stored_floor_s the median of
// the stored floor's rounds, stored_floor_ratio = stored_floor_s / floor_s
// (what storing the results costs by itself) and stored_ratio = acked_s /
// stored_floor_s (what the agents add on top); acked_s runs from just before
// the command's publish to the JetStream timestamp of the last of the N
// results; sql_s to the first poll of the API that counted N results in
// SQLite (polled every 25 ms); p50/p99 are over the N results' JetStream
// timestamps minus the publish time. CPU figures cover publish → SQLite
// complete; the backend's RSS is read then, its peak is since its start.
type FanoutResult struct {
	Agents      int
	FloorRounds []time.Duration
	Floor       time.Duration
	// StoredRounds and Stored are the stored floor (see floor): the
	// same fan-out with every reply first stored in JetStream.
	StoredRounds []time.Duration
	Stored       time.Duration
	Acked        time.Duration
	SQL          time.Duration
	P50, P99     time.Duration
	// Results is how many results the subject holds in RESULTS (N when
	// each was stored exactly once).
	Results    int
	Backend    ProcSample // at SQLite complete
	BackendCPU time.Duration
	SimCPU     time.Duration
	CPUKnown   bool
	Sim        sim.Report
}

func (r FanoutResult) String() string {
	return fmt.Sprintf("fanout agents=%d floor_s=%s acked_s=%s ratio=%s sql_s=%s sql_ratio=%s p50_ms=%.0f p99_ms=%.0f results=%d backend_cpu_s=%s backend_rss_mib=%s backend_peak_rss_mib=%s sim_cpu_s=%s sim_go_kib_per_agent=%.0f sim_rss_kib_per_agent=%.0f stored_floor_s=%s stored_floor_ratio=%s stored_ratio=%s",
		r.Agents, fmtSeconds(r.Floor), fmtSeconds(r.Acked), fmtRatio(r.Acked, r.Floor), fmtSeconds(r.SQL), fmtRatio(r.SQL, r.Floor),
		ms(r.P50), ms(r.P99), r.Results,
		fmtCPU(r.BackendCPU, r.CPUKnown), fmtMiB(r.Backend.RSS, r.Backend.OK), fmtMiB(r.Backend.HWM, r.Backend.OK),
		fmtCPU(r.SimCPU, r.CPUKnown), float64(r.Sim.PerAgentGo())/1024, float64(r.Sim.PerAgentRSS())/1024,
		fmtSeconds(r.Stored), fmtRatio(r.Stored, r.Floor), fmtRatio(r.Acked, r.Stored))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Fanout measures, for each fleet size, the floor and one broadcast to
// the simulated fleet, and prints one FanoutResult line per size.
func Fanout(ctx context.Context, o Options) error {
	if err := o.defaults(); err != nil {
		return err
	}
	for _, n := range o.Agents {
		res, err := RunFanout(ctx, o, n)
		if err != nil {
			return fmt.Errorf("fanout agents=%d: %w", n, err)
		}
		fmt.Fprintln(o.Out, res)
	}
	return nil
}

// RunFanout is one fan-out measurement with n agents (o already has its
// defaults when called through Fanout; RunFanout applies them too).
func RunFanout(ctx context.Context, o Options, n int) (res FanoutResult, err error) {
	o.Agents = []int{n}
	if err := o.defaults(); err != nil {
		return res, err
	}
	res.Agents = n
	r, err := newRig(ctx, o, fmt.Sprintf("fanout-%d", n))
	if err != nil {
		return res, err
	}
	defer func() {
		if err != nil {
			r.failed = true
		}
		r.close()
	}()

	// The command, as the API publishes an ad-hoc run. Its bytes are
	// also the floor's request payload.
	cmd := fleetclient.Prepare(wire.Command{Script: "exit 0"})
	payload, err := json.Marshal(cmd)
	if err != nil {
		return res, err
	}

	// 1. The floor, on the same broker, before the agents exist (the two
	// sets of sockets do not fit in this process together).
	pctx, cancel := context.WithTimeout(ctx, o.Timeout)
	r.logf("floor: connecting %d plain responders", n)
	fl, err := openFloor(pctx, r.be.natsURL, n, false)
	cancel()
	if err != nil {
		return res, err
	}
	res.FloorRounds, err = fl.measure(ctx, o.FloorRounds, payload, o.Timeout)
	fl.close()
	if err != nil {
		return res, err
	}
	if res.Floor, err = median(res.FloorRounds); err != nil {
		return res, err
	}
	r.logf("floor rounds %v, median %s", res.FloorRounds, res.Floor)
	if res.StoredRounds, err = r.storedFloor(ctx, n, payload); err != nil {
		return res, err
	}
	if res.Stored, err = median(res.StoredRounds); err != nil {
		return res, err
	}
	r.logf("stored floor rounds %v, median %s", res.StoredRounds, res.Stored)

	// 2. The fleet.
	if err := r.startFleet(ctx, n); err != nil {
		return res, err
	}

	// 3. One broadcast.
	self0, _ := readProc(os.Getpid())
	be0, _ := readProc(r.be.pid())
	mctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	stopProfile := r.profile(true)
	t0 := time.Now()
	if err := r.fc.Publish(mctx, fleetclient.Target{All: true}, cmd); err != nil {
		stopProfile()
		return res, err
	}
	var inSQL int
	err = poll(mctx, 25*time.Millisecond, func() (bool, error) {
		if !r.be.alive() {
			return false, r.be.died()
		}
		c, err := r.api.execResults(mctx, cmd.ExecID)
		if err != nil {
			return false, nil // a busy API is retried; the deadline decides
		}
		inSQL = c
		return c >= n, nil
	})
	sqlAt := time.Now()
	stopProfile()
	if err != nil {
		return res, fmt.Errorf("%d of %d results in SQLite: %w", inSQL, n, err)
	}
	res.SQL = sqlAt.Sub(t0)
	self1, _ := readProc(os.Getpid())
	be1, _ := readProc(r.be.pid())
	res.Backend = be1
	res.CPUKnown = self0.OK && self1.OK && be0.OK && be1.OK
	res.BackendCPU, res.SimCPU = be1.CPU-be0.CPU, self1.CPU-self0.CPU
	res.Sim = r.fleet.Report()

	// 4. What JetStream stored: every result once, with its timestamp.
	lat, stored, err := storedResults(mctx, r.fc.JS, cmd.RequestID, n, t0)
	if err != nil {
		return res, err
	}
	res.Results = stored
	if len(lat) == 0 {
		return res, errors.New("no result in RESULTS although SQLite counted them")
	}
	slices.Sort(lat)
	res.Acked = lat[len(lat)-1]
	res.P50 = lat[len(lat)/2]
	res.P99 = lat[min(len(lat)-1, len(lat)*99/100)]
	if stored != n {
		return res, fmt.Errorf("RESULTS holds %d results for %d agents (each must be stored exactly once)", stored, n)
	}
	return res, nil
}

// storedFloor measures the stored floor in a stream of its own, set up
// like RESULTS, which it deletes again so the fleet's run starts clean.
func (r *rig) storedFloor(ctx context.Context, n int, payload []byte) ([]time.Duration, error) {
	c, cancel := context.WithTimeout(ctx, r.o.Timeout)
	defer cancel()
	if _, err := r.fc.JS.CreateStream(c, jetstream.StreamConfig{
		Name: storedFloorStream, Subjects: []string{storedFloorSubject + ".>"},
		Storage: jetstream.FileStorage, Replicas: 1, Discard: jetstream.DiscardOld,
	}); err != nil {
		return nil, fmt.Errorf("creating the stored floor's stream: %w", err)
	}
	defer func() { _ = r.fc.JS.DeleteStream(context.WithoutCancel(ctx), storedFloorStream) }()
	r.logf("stored floor: connecting %d responders that store before replying", n)
	fl, err := openFloor(c, r.be.natsURL, n, true)
	if err != nil {
		return nil, err
	}
	defer fl.close()
	return fl.measure(ctx, r.o.FloorRounds, payload, r.o.Timeout)
}

// storedResults reads every result of a request from RESULTS and returns
// their JetStream timestamps minus t0 (the publish), checking
// that no PC's result is there twice, and the number of messages the
// subject holds.
func storedResults(ctx context.Context, js jetstream.JetStream, requestID string, n int, t0 time.Time) ([]time.Duration, int, error) {
	subj := wire.SubjectResultsOfRequest(requestID)
	s, err := js.Stream(ctx, wire.StreamResults)
	if err != nil {
		return nil, 0, err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		return nil, 0, err
	}
	stored := 0
	for _, count := range info.State.Subjects {
		stored += int(count)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}})
	if err != nil {
		return nil, 0, err
	}
	seen := make(map[string]bool, n)
	out := make([]time.Duration, 0, n)
	for len(out) < stored {
		batch, err := cons.Fetch(min(stored-len(out), 1000), jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			return nil, stored, err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			meta, err := m.Metadata()
			if err != nil {
				return nil, stored, err
			}
			var res wire.ExecResult
			if err := json.Unmarshal(m.Data(), &res); err != nil {
				return nil, stored, fmt.Errorf("result %d: %w", meta.Sequence.Stream, err)
			}
			if seen[res.PCID] {
				return nil, stored, fmt.Errorf("two results from %s", res.PCID)
			}
			if res.ExitCode != 0 {
				return nil, stored, fmt.Errorf("result from %s: exit %d: %s", res.PCID, res.ExitCode, strings.TrimSpace(res.Stderr))
			}
			seen[res.PCID] = true
			out = append(out, meta.Timestamp.Sub(t0))
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, stored, err
		}
		if got == 0 {
			return nil, stored, fmt.Errorf("read %d of the %d results stored", len(out), stored)
		}
	}
	return out, stored, nil
}
