package natsauth_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-project/kanade/internal/agent"
	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/fleetclient"
	"github.com/kanade-project/kanade/internal/logtest"
	"github.com/kanade-project/kanade/internal/wire"
)

// logBuffer collects an agent's log lines for the test to wait on.
type logBuffer struct{ logtest.Buffer }

// count returns how many lines contain every one of subs.
func (l *logBuffer) count(subs ...string) int {
	n := 0
	for _, line := range strings.Split(l.String(), "\n") {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(line, s)
		}
		if all && line != "" {
			n++
		}
	}
	return n
}

// violations returns the log lines reporting a permission violation.
func (l *logBuffer) violations() []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.Contains(strings.ToLower(line), "permissions violation") {
			out = append(out, line)
		}
	}
	return out
}

// runningAgent is a real agent in this process, authenticated by its seed.
type runningAgent struct {
	id   string
	logs *logBuffer
	stop func() error
}

// startAgent runs a real agent for pc with seed until the test ends (or
// stop is called); cfg fills the rest.
func startAgent(t *testing.T, srv *brokertest.Server, pc string, seed []byte, cfg agent.Config) *runningAgent {
	t.Helper()
	logs := &logBuffer{}
	cfg.ID = pc
	cfg.NATSURLs = []string{srv.URL()}
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.Version == "" {
		cfg.Version = "1.0.0"
	}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.NATSOptions = append(cfg.NATSOptions, brokertest.SeedOption(t, seed))
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(30 * time.Second):
				runErr = fmt.Errorf("agent %s did not stop", pc)
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil && !errors.Is(err, agent.ErrRestart) {
			t.Errorf("agent %s: %v", pc, err)
		}
		if t.Failed() {
			t.Logf("agent %s log:\n%s", pc, logs.String())
		}
	})
	return &runningAgent{id: pc, logs: logs, stop: stop}
}

// operator is a fleet client authenticated as the operator role.
func operator(t testing.TB, srv *brokertest.Server) *fleetclient.Client {
	t.Helper()
	c, err := fleetclient.New(srv.ConnectAs(t, srv.Roles().OperatorSeed))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitFor polls cond every 20 ms until it holds or 30 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitPing(t testing.TB, c *fleetclient.Client, pc string) wire.Heartbeat {
	t.Helper()
	var hb wire.Heartbeat
	waitFor(t, pc+" to answer a ping", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		var err error
		hb, err = c.Ping(ctx, pc)
		return err == nil
	})
	return hb
}

// collect waits for n results of an execution.
func collect(t testing.TB, ex *fleetclient.Execution, n int) []wire.ExecResult {
	t.Helper()
	var out []wire.ExecResult
	timeout := time.After(30 * time.Second)
	for len(out) < n {
		select {
		case r := <-ex.Results:
			out = append(out, r)
		case <-timeout:
			t.Fatalf("got %d of %d results: %+v", len(out), n, out)
		}
	}
	return out
}

func runOn(t testing.TB, c *fleetclient.Client, target fleetclient.Target, cmd wire.Command, n int) []wire.ExecResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ex, err := c.Start(ctx, target, cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Close()
	return collect(t, ex, n)
}

// errorSink is a connection's asynchronous error handler that keeps every
// error for the test.
type errorSink chan error

func (s errorSink) handler() nats.Option {
	return nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case s <- err:
		default:
		}
	})
}

// expectViolation waits for the server's permission violation for op
// ("Publish" or "Subscription") on subject. It fails on any other error,
// and only after 10 s without one: the assertion is the server's refusal,
// never a timeout of the operation itself.
func (s errorSink) expectViolation(t testing.TB, op, subject string) {
	t.Helper()
	want := fmt.Sprintf("Permissions Violation for %s to %q", op, subject)
	timeout := time.After(10 * time.Second)
	for {
		select {
		case err := <-s:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), want) {
				return
			}
			t.Logf("other asynchronous error: %v", err)
		case <-timeout:
			t.Fatalf("no permission violation %q from the server", want)
		}
	}
}
