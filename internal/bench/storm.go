package bench

import (
	"context"
	"fmt"
	"time"
)

// StormResult is one reconnect-storm measurement. Its String is the
// summary line (keys in this order):
//
//	storm agents=N online_s= broker_peak_rss_mib= crashed= restart_s=
//	      sockets_s= dials= backend_cpu_s=
//
// The broker (the backend child) is killed with SIGKILL and started again
// on the same port and data dir. Times run from the start of the new
// child: restart_s until it served (broker, bootstrap, projectors, API),
// sockets_s until every agent's socket was open again, online_s until the
// backend had received a heartbeat from every agent after the restart (its
// oldest last_seen is newer than the restart; polled every 100 ms).
// broker_peak_rss_mib is the new child's VmHWM, its peak resident set
// since start — the storm included; dials counts the agents' connection
// attempts during the storm; backend_cpu_s is the new child's CPU from its
// start until all were online. crashed is true when the new child died before that.
type StormResult struct {
	Agents     int
	Restart    time.Duration
	Sockets    time.Duration
	Online     time.Duration
	Backend    ProcSample
	BackendCPU time.Duration
	Dials      int64
	Crashed    bool
}

func (r StormResult) String() string {
	return fmt.Sprintf("storm agents=%d online_s=%s broker_peak_rss_mib=%s crashed=%t restart_s=%s sockets_s=%s dials=%d backend_cpu_s=%s",
		r.Agents, fmtSeconds(r.Online), fmtMiB(r.Backend.HWM, r.Backend.OK), r.Crashed,
		fmtSeconds(r.Restart), fmtSeconds(r.Sockets), r.Dials, fmtCPU(r.BackendCPU, r.Backend.OK))
}

// Storm measures, for each fleet size, a broker restart under a connected
// fleet, and prints one StormResult line per size.
func Storm(ctx context.Context, o Options) error {
	if err := o.defaults(); err != nil {
		return err
	}
	for _, n := range o.Agents {
		res, err := RunStorm(ctx, o, n)
		if err != nil {
			if res.Crashed {
				fmt.Fprintln(o.Out, res)
			}
			return fmt.Errorf("storm agents=%d: %w", n, err)
		}
		fmt.Fprintln(o.Out, res)
	}
	return nil
}

// RunStorm is one reconnect-storm measurement with n agents.
func RunStorm(ctx context.Context, o Options, n int) (res StormResult, err error) {
	o.Agents = []int{n}
	if err := o.defaults(); err != nil {
		return res, err
	}
	res.Agents = n
	r, err := newRig(ctx, o, fmt.Sprintf("storm-%d", n))
	if err != nil {
		return res, err
	}
	defer func() {
		if err != nil {
			r.failed = true
		}
		r.close()
	}()
	if err := r.startFleet(ctx, n); err != nil {
		return res, err
	}

	dials0 := r.fleet.Dials()
	r.logf("killing the backend (pid %d)", r.be.pid())
	stopProfile := r.profile(false)
	defer stopProfile()
	r.be.kill()
	begin := time.Now()
	// The port was just freed; a start that loses the race for it is
	// retried until the phase deadline.
	sctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	for {
		r.be, err = startBackend(sctx, r.spec, o.Timeout)
		if err == nil || sctx.Err() != nil {
			break
		}
		r.logf("restart failed (%v); retrying", err)
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-sctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	if err != nil {
		r.be = nil
		return res, err
	}
	res.Restart = r.be.ready.Sub(begin)
	r.api = newAPIClient(r.be.httpURL, r.spec.token)
	r.logf("backend back after %s (pid %d)", res.Restart.Round(time.Millisecond), r.be.pid())

	var total int
	var oldest time.Time
	err = poll(sctx, 100*time.Millisecond, func() (bool, error) {
		if !r.be.alive() {
			res.Crashed = true
			return false, r.be.died()
		}
		if res.Sockets == 0 && r.fleet.Connected() >= n {
			res.Sockets = time.Since(begin)
		}
		var err error
		total, oldest, err = r.api.agentsSeen(sctx)
		if err != nil {
			return false, nil // busy: retried until the deadline
		}
		return total >= n && oldest.After(begin), nil
	})
	onlineAt := time.Now()
	if err != nil {
		return res, fmt.Errorf("%d agents known, oldest heartbeat %s: %w", total, oldest.Format(time.RFC3339Nano), err)
	}
	res.Online = onlineAt.Sub(begin)
	if res.Sockets == 0 {
		res.Sockets = res.Online
	}
	res.Dials = r.fleet.Dials() - dials0
	be1, _ := readProc(r.be.pid())
	res.Backend = be1
	res.BackendCPU = be1.CPU
	return res, nil
}
