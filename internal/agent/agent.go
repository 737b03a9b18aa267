package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/runner"
	"github.com/kanade-project/kanade/internal/wire"
)

// Executor runs one script. runner.Run is the real one; the fleet simulator
// plugs in an in-process executor.
type Executor func(ctx context.Context, spec runner.Spec) (runner.Result, error)

// Config is everything an Agent needs; tests build it in-process.
type Config struct {
	// ID is the pc_id.
	ID       string
	NATSURLs []string
	// Token authenticates to the broker; never logged.
	Token   string
	DataDir string
	Version string
	// HeartbeatInterval defaults to 30 s.
	HeartbeatInterval time.Duration
	// Exec defaults to runner.Run.
	Exec   Executor
	Logger *slog.Logger
	// NATSOptions are appended to the connection options (tests, TLS).
	NATSOptions []nats.Option
}

// Agent is one running endpoint daemon.
type Agent struct {
	cfg Config
	log *slog.Logger

	nc *nats.Conn
	js jetstream.JetStream

	hb *heartbeats

	runs sync.WaitGroup
	// runCtx is cancelled (with a cause) when the agent stops, killing
	// whatever is still running so that its result can still be sent.
	runCtx    context.Context
	cancelRun context.CancelCauseFunc
}

// New validates cfg and returns an Agent ready to Run.
func New(cfg Config) (*Agent, error) {
	if err := wire.CheckToken("agent id", cfg.ID); err != nil {
		return nil, err
	}
	if len(cfg.NATSURLs) == 0 {
		return nil, errors.New("agent: no NATS URL configured")
	}
	if cfg.DataDir == "" {
		return nil, errors.New("agent: no data dir configured")
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 30 * time.Second
	}
	if cfg.Exec == nil {
		cfg.Exec = runner.Run
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &Agent{cfg: cfg, log: cfg.Logger.With("pc_id", cfg.ID)}
	a.hb = newHeartbeats(a)
	return a, nil
}

// Run connects and serves until ctx is cancelled. The broker does not need
// to be reachable: the first connection is retried forever.
func (a *Agent) Run(ctx context.Context) error {
	a.runCtx, a.cancelRun = context.WithCancelCause(context.Background())
	defer a.cancelRun(nil)

	nc, err := a.connect()
	if err != nil {
		return err
	}
	a.nc = nc
	defer nc.Close()
	a.js, err = jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("agent: jetstream: %w", err)
	}

	subs, err := a.subscribe()
	if err != nil {
		return err
	}
	a.log.Info("agent started", "version", a.cfg.Version, "servers", a.cfg.NATSURLs)

	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		a.hb.loop(ctx)
	}()

	<-ctx.Done()
	a.log.Info("agent stopping")
	for _, s := range subs {
		_ = s.Unsubscribe()
	}
	<-hbDone
	// Running scripts are killed, not abandoned: their results (exit -1,
	// reason in stderr) are still published if the broker is reachable.
	a.cancelRun(errors.New("agent stopping"))
	a.runs.Wait()
	_ = nc.Flush()
	return nil
}

func (a *Agent) connect() (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name("kanade-agent " + a.cfg.ID),
		// The first connection is retried like a reconnect, so an agent
		// started before the broker (boot order, outage) simply waits.
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.ReconnectJitter(500*time.Millisecond, 2*time.Second),
		nats.PingInterval(20 * time.Second),
		nats.ConnectHandler(func(*nats.Conn) { a.log.Info("connected to broker") }),
		nats.ReconnectHandler(func(c *nats.Conn) { a.log.Info("reconnected to broker", "url", c.ConnectedUrlRedacted()) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				a.log.Warn("disconnected from broker", "err", err)
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, s *nats.Subscription, err error) {
			subj := ""
			if s != nil {
				subj = s.Subject
			}
			a.log.Error("nats async error", "subject", subj, "err", err)
		}),
	}
	if a.cfg.Token != "" {
		opts = append(opts, nats.Token(a.cfg.Token))
	}
	opts = append(opts, a.cfg.NATSOptions...)
	nc, err := nats.Connect(joinURLs(a.cfg.NATSURLs), opts...)
	if err != nil {
		return nil, fmt.Errorf("agent: connect: %w", err)
	}
	return nc, nil
}

func joinURLs(urls []string) string {
	s := ""
	for i, u := range urls {
		if i > 0 {
			s += ","
		}
		s += u
	}
	return s
}

func (a *Agent) subscribe() ([]*nats.Subscription, error) {
	var subs []*nats.Subscription
	add := func(subject string, h nats.MsgHandler) error {
		s, err := a.nc.Subscribe(subject, h)
		if err != nil {
			return fmt.Errorf("agent: subscribe %s: %w", subject, err)
		}
		// A broadcast burst must not be dropped as a slow consumer: the
		// handlers only hand work to goroutines, so the queue drains fast.
		_ = s.SetPendingLimits(-1, -1)
		subs = append(subs, s)
		return nil
	}
	for _, subj := range []string{wire.SubjectCommandsAll, wire.SubjectCommandsPC(a.cfg.ID)} {
		if err := add(subj, a.onCommand); err != nil {
			return nil, err
		}
	}
	if err := add(wire.SubjectPing(a.cfg.ID), a.hb.onPing); err != nil {
		return nil, err
	}
	if err := add(wire.SubjectSurvey, a.hb.onPing); err != nil {
		return nil, err
	}
	return subs, nil
}
