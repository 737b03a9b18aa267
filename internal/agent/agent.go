package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/kanade-project/kanade/internal/configsync"
	"github.com/kanade-project/kanade/internal/connstate"
	"github.com/kanade-project/kanade/internal/fleetconfig"
	"github.com/kanade-project/kanade/internal/inventory"
	"github.com/kanade-project/kanade/internal/ledger"
	"github.com/kanade-project/kanade/internal/outbox"
	"github.com/kanade-project/kanade/internal/retry"
	"github.com/kanade-project/kanade/internal/runner"
	"github.com/kanade-project/kanade/internal/selfupdate"
	"github.com/kanade-project/kanade/internal/signing"
	"github.com/kanade-project/kanade/internal/wire"
)

const ledgerDone = ledger.Done

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
	// MaxConcurrent limits simultaneous runs; default the CPU count.
	MaxConcurrent int
	// Exec defaults to runner.Run.
	Exec   Executor
	Logger *slog.Logger
	// NATSOptions are appended to the connection options (tests, TLS).
	NATSOptions []nats.Option
	// Outbox tunes the outbox drain (tests shorten the backoff).
	Outbox outbox.Options
	// Retry is the schedule for acquiring JetStream resources; default
	// retry.Default().
	Retry retry.Policy
	// SelfUpdate enables following target_version; nil disables it (tests,
	// the fleet simulator).
	SelfUpdate *SelfUpdate
	// Inventory collects the host's inventory; default inventory.New for
	// this platform.
	Inventory inventory.Collector
	// NoHostFacts turns off inventory collection and host_perf samples.
	// The fleet simulator sets it: its thousands of agents share one host,
	// whose facts would be the same for every one of them, and collecting
	// them would only load the machine under test.
	NoHostFacts bool
	// CommandSigning configures signed commands; nil trusts no command
	// key and runs commands unsigned.
	CommandSigning *CommandSigning
}

// SelfUpdate configures the self-updater.
type SelfUpdate struct {
	// Exe is the running executable to replace.
	Exe string
	// ReleaseKeys are the release keys this endpoint trusts (from its own
	// config or registry, never from KV); empty accepts unsigned releases.
	ReleaseKeys *signing.Ring
	// HealthyAfter defaults to 30 s.
	HealthyAfter time.Duration
	// OnDownload is a test hook.
	OnDownload func(version string)
}

// ErrRestart is returned by Run when the agent stops to be restarted by its
// service manager (a new binary was swapped in).
var ErrRestart = errors.New("agent: restart requested")

// Agent is one running endpoint daemon.
type Agent struct {
	cfg Config
	log *slog.Logger

	nc      *nats.Conn
	js      jetstream.JetStream
	link    *connstate.Tracker
	outbox  *outbox.Outbox
	ledger  *ledger.Ledger
	slots   *slots
	kills   *killSwitch
	gates   *gateCache
	replays *replayer
	hb      *heartbeats
	cfgsync *configsync.Supervisor
	gsubs   groupSubs

	runs sync.WaitGroup
	// runCtx is cancelled (with a cause) when the agent stops, killing
	// whatever is still running so that its result can still be queued.
	runCtx    context.Context
	cancelRun context.CancelCauseFunc
	// stopped is closed when the agent is shutting down.
	stopped chan struct{}
	// restart is closed when the updater asks for a restart.
	restart     chan struct{}
	restartOnce sync.Once
	updater     *selfupdate.Updater
	inv         *inventoryState
	verify      *verifier
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
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = runtime.NumCPU()
	}
	if cfg.Exec == nil {
		cfg.Exec = runner.Run
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Retry.Min <= 0 {
		cfg.Retry = retry.Default()
	}
	if cfg.Inventory == nil && !cfg.NoHostFacts {
		cfg.Inventory = inventory.New(inventory.Sources{})
	}
	a := &Agent{cfg: cfg, log: cfg.Logger.With("pc_id", cfg.ID), stopped: make(chan struct{}), restart: make(chan struct{})}
	a.hb = newHeartbeats(a)
	a.slots = newSlots(cfg.MaxConcurrent)
	a.kills = newKillSwitch()
	a.verify = newVerifier(cfg.CommandSigning, a.log, a.queueObs)
	return a, nil
}

// Run serves until ctx is cancelled. Nothing here waits for the broker: the
// outbox and the ledger are local, and the first connection is retried
// forever in the background.
func (a *Agent) Run(ctx context.Context) error {
	a.runCtx, a.cancelRun = context.WithCancelCause(context.Background())
	defer a.cancelRun(nil)

	var err error
	ob := a.cfg.Outbox
	ob.Logger = a.log
	ob.OnSent = a.onSent
	if a.outbox, err = outbox.Open(filepath.Join(a.cfg.DataDir, "outbox"), ob); err != nil {
		return err
	}
	if a.ledger, err = ledger.Open(filepath.Join(a.cfg.DataDir, "ledger")); err != nil {
		return err
	}
	if n, err := a.ledger.Prune(); err != nil {
		a.log.Warn("pruning the admission ledger", "err", err)
	} else if n > 0 {
		a.log.Info("pruned expired ledger entries", "count", n)
	}
	a.link = connstate.New()
	a.inv = newInventoryState(a.cfg.DataDir)
	a.gates = newGateCache()

	nc, err := a.connect()
	if err != nil {
		return err
	}
	a.nc = nc
	defer nc.Close()
	if a.js, err = jetstream.New(nc); err != nil {
		return fmt.Errorf("agent: jetstream: %w", err)
	}
	a.replays = newReplayer(a)
	defaults := fleetconfig.Defaults(a.cfg.MaxConcurrent)
	defaults.HeartbeatInterval = wire.Duration(a.cfg.HeartbeatInterval)
	a.cfgsync = configsync.New(configsync.Options{
		PCID: a.cfg.ID, NC: nc, JS: a.js, Link: a.link, Logger: a.log, Retry: a.cfg.Retry,
		Defaults: defaults,
	})
	a.gsubs.subs = map[string]*nats.Subscription{}
	if su := a.cfg.SelfUpdate; su != nil {
		a.updater = selfupdate.New(selfupdate.Options{
			Version: a.cfg.Version, GOOS: runtime.GOOS, GOARCH: runtime.GOARCH,
			Exe: su.Exe, StagingDir: filepath.Join(a.cfg.DataDir, "staging"),
			JS: a.js, Link: a.link, Logger: a.log, Ring: su.ReleaseKeys,
			Target: a.updateTarget, Obs: a.queueObs, Restart: a.requestRestart,
			HealthyAfter: su.HealthyAfter, Retry: a.cfg.Retry, OnDownload: su.OnDownload,
		})
	}

	// Crash recovery comes before any new command: a request the previous
	// process left "launching" must get its answer, not a second launch.
	a.recover()
	a.queueObs(wire.ObsAgentOnline, "online-"+nuid.Next(), map[string]string{"version": a.cfg.Version})
	a.verify.load()

	var bg sync.WaitGroup
	bgCtx, stopBg := context.WithCancel(context.Background())
	defer stopBg()
	bg.Go(func() { a.outbox.Run(bgCtx, a.publisher()) })
	bg.Go(func() { a.wakeOutboxOnReconnect(bgCtx) })

	subs, err := a.subscribe()
	if err != nil {
		return err
	}
	bg.Go(func() { a.cfgsync.Run(bgCtx) })
	bg.Go(func() { a.applyConfigLoop(bgCtx) })
	bg.Go(func() { a.replays.loop(bgCtx) })
	bg.Go(func() { a.hb.loop(bgCtx) })
	bg.Go(func() { a.pruneLoop(bgCtx) })
	bg.Go(func() { a.verify.reloadLoop(bgCtx) })
	if !a.cfg.NoHostFacts {
		bg.Go(func() { a.inventoryLoop(bgCtx) })
		bg.Go(func() { a.hostPerfLoop(bgCtx) })
	}
	if a.updater != nil {
		bg.Go(func() { a.updater.Run(bgCtx) })
	}
	a.log.Info("agent started", "version", a.cfg.Version, "servers", a.cfg.NATSURLs, "max_concurrent", a.cfg.MaxConcurrent)

	restarting := false
	select {
	case <-ctx.Done():
	case <-a.restart:
		restarting = true
	}
	a.log.Info("agent stopping", "restart", restarting)
	close(a.stopped)
	for _, s := range subs {
		_ = s.Unsubscribe()
	}
	// Running scripts are killed, not abandoned: their results (exit -1,
	// reason in stderr) are queued and sent now or at the next start.
	a.cancelRun(errors.New("agent stopping"))
	a.runs.Wait()
	stopBg()
	bg.Wait()
	if a.link.Connected() {
		flushCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		a.outbox.Flush(flushCtx, a.publisher())
		cancel()
		// Only while connected: a Flush on a connection still trying to
		// reach its broker waits out its whole timeout, which made an agent
		// that never connected take 10 s to stop (a Windows service stop).
		_ = nc.FlushTimeout(2 * time.Second)
	}
	if restarting {
		return ErrRestart
	}
	return nil
}

// requestRestart makes Run return ErrRestart (the new binary is in place).
func (a *Agent) requestRestart() { a.restartOnce.Do(func() { close(a.restart) }) }

// updateTarget feeds the updater from the fleet config. Until the first
// full read it reports no target, so a boot never acts on defaults.
func (a *Agent) updateTarget() (string, time.Duration, <-chan struct{}) {
	st, changed := a.cfgsync.State()
	if !st.Synced {
		return "", 0, changed
	}
	e := st.Resolution.Effective
	return e.TargetVersion, e.TargetVersionJitter.D(), changed
}

func (a *Agent) connect() (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name("kanade-agent " + a.cfg.ID),
		// Replies to this agent's requests (JetStream API, PubAcks) arrive
		// under a prefix naming it, so a role can let it read its own
		// inbox and no other agent's (internal/natsauth).
		nats.CustomInboxPrefix(wire.InboxPrefix(a.cfg.ID)),
		// The first connection is retried like a reconnect, so an agent
		// started before the broker (boot order, outage) simply waits.
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.ReconnectJitter(500*time.Millisecond, 2*time.Second),
		nats.PingInterval(20 * time.Second),
		// While disconnected, publishes are refused at once rather than
		// buffered: everything that matters goes through the outbox.
		nats.ReconnectBufSize(-1),
		nats.ConnectHandler(func(c *nats.Conn) {
			a.log.Info("connected to broker", "url", c.ConnectedUrlRedacted())
			a.link.SetConnected()
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			a.log.Info("reconnected to broker", "url", c.ConnectedUrlRedacted())
			a.link.SetConnected()
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			a.link.SetDisconnected()
			if err != nil {
				a.log.Warn("disconnected from broker", "err", err)
			}
		}),
		nats.ReconnectErrHandler(newConnErrLog(a.log).report),
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
	nc, err := nats.Connect(strings.Join(a.cfg.NATSURLs, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("agent: connect: %w", err)
	}
	if nc.IsConnected() {
		a.link.SetConnected()
	}
	return nc, nil
}

// wakeOutboxOnReconnect lets queued results go out the moment the broker is
// back instead of at each file's next backoff tick.
func (a *Agent) wakeOutboxOnReconnect(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.link.Reconnected():
			a.outbox.RetryNow()
		}
	}
}

func (a *Agent) publisher() *jsPublisher {
	return &jsPublisher{nc: a.nc, js: a.js, pc: a.cfg.ID, objects: map[string]jetstream.ObjectStore{}}
}

func (a *Agent) pruneLoop(ctx context.Context) {
	t := time.NewTicker(6 * time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := a.ledger.Prune(); err != nil {
				a.log.Warn("pruning the admission ledger", "err", err)
			}
		}
	}
}

// ownSubjects are the command subjects this agent listens to; replay reads
// exactly these, never commands.>.
func (a *Agent) ownSubjects() []string {
	out := []string{wire.SubjectCommandsAll, wire.SubjectCommandsPC(a.cfg.ID)}
	for _, g := range a.gsubs.groups() {
		out = append(out, wire.SubjectCommandsGroup(g))
	}
	return out
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
	// kill.* comes first, before any command subscription, and lives as
	// long as the connection (nats.go re-sends it after a reconnect). The
	// server applies one connection's subscriptions in order, so once it
	// delivers a command here it also routes kills here: a kill sent after
	// the command reaches this agent, which the old per-run Subscribe +
	// Flush bought with a round trip (and broker work) for every run.
	// Group subscriptions are made later still, and replays are fetched
	// with requests sent after the (re-)subscriptions. Only a re-sent set
	// of subscriptions after a reconnect has no order (nats.go walks a
	// map); they go out in one burst, before anything else is sent.
	if err := add(wire.SubjectKillWild, a.onKill); err != nil {
		return nil, err
	}
	for _, subj := range []string{wire.SubjectCommandsAll, wire.SubjectCommandsPC(a.cfg.ID)} {
		if err := add(subj, a.onCommand); err != nil {
			return nil, err
		}
	}
	if err := add(wire.SubjectAgentConfig(a.cfg.ID), a.onConfigRequest); err != nil {
		return nil, err
	}
	for _, subj := range []string{wire.SubjectInventoryRefresh(a.cfg.ID), wire.SubjectInventoryRefreshAll} {
		if err := add(subj, a.onInventoryRefresh); err != nil {
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
