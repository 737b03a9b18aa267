// Package server is `kanade server`: the broker (embedded by default, or an
// external NATS server/cluster), every JetStream resource bootstrapped, the
// SQLite projection of the streams, the HTTP API with /metrics and, in dev
// mode, an in-process agent for this machine so that one command gives a
// working fleet of one.
//
// Run returns only after everything it started has stopped, in reverse
// order: HTTP, the dev agent (its last results still reach the broker),
// the projectors, the store, the broker.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/agent"
	"github.com/kanade-project/kanade/internal/api"
	"github.com/kanade-project/kanade/internal/apiauth"
	"github.com/kanade-project/kanade/internal/bootstrap"
	"github.com/kanade-project/kanade/internal/broker"
	"github.com/kanade-project/kanade/internal/buildinfo"
	"github.com/kanade-project/kanade/internal/dashboard"
	"github.com/kanade-project/kanade/internal/fleetclient"
	"github.com/kanade-project/kanade/internal/hostinfo"
	"github.com/kanade-project/kanade/internal/jobs"
	"github.com/kanade-project/kanade/internal/projector"
	"github.com/kanade-project/kanade/internal/scheduler"
	"github.com/kanade-project/kanade/internal/serverconfig"
	"github.com/kanade-project/kanade/internal/store"
	"github.com/kanade-project/kanade/internal/wire"
)

// Options configure a server run.
type Options struct {
	// Config is server.toml (serverconfig.Default() when nil).
	Config *serverconfig.Config
	// DataDir overrides the config's data_dir.
	DataDir string
	// NATSListen and HTTPListen override the config's addresses.
	NATSListen string
	HTTPListen string
	// NoHTTP skips the HTTP API (tests that need only the broker).
	NoHTTP bool
	// Dev also runs an in-process agent and turns API auth off.
	Dev bool
	// DevTLS (with Dev) serves the broker and the API over TLS with a
	// development CA made under the data dir (tls.go).
	DevTLS bool
	// AgentID overrides the dev agent's pc_id (default: the hostname).
	AgentID string
	Logger  *slog.Logger
	// Out receives the human-readable start-up banner.
	Out io.Writer
	// Ready, when set, is called once everything is up (tests).
	Ready func(natsURL, httpURL string)
	// RetentionInterval, when positive, replaces [retention] interval
	// and the delay of the first trim (tests).
	RetentionInterval time.Duration
}

// Run starts the system and blocks until ctx is cancelled.
func Run(ctx context.Context, o Options) error {
	cfg := o.Config
	if cfg == nil {
		cfg = serverconfig.Default()
	}
	dataDir := o.DataDir
	if dataDir == "" {
		dataDir = cfg.DataDir
	}
	if dataDir == "" {
		return errors.New("server: a data dir is required (--data-dir or data_dir in server.toml)")
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	secrets, err := cfg.LoadSecrets()
	if err != nil {
		return err
	}
	ts, err := loadTLS(cfg, o, dataDir)
	if err != nil {
		return err
	}
	signer, err := cfg.CommandSigner()
	if err != nil {
		return err
	}
	if signer != nil {
		log.Info("every command published by the backend is signed", "command_key", signer.KeyID())
	}
	auth := &apiauth.Authenticator{Disabled: o.Dev, Token: secrets.APIToken, JWTSecret: secrets.JWTSecret}
	if !o.Dev && !o.NoHTTP && secrets.APIToken == "" && len(secrets.JWTSecret) == 0 {
		return fmt.Errorf("the HTTP API needs credentials: set %s (a static admin token) or %s (HS256 secret, ≥ 32 bytes), or their *_file options in server.toml; use --dev for an unauthenticated local system", serverconfig.EnvAPIToken, serverconfig.EnvJWTSecret)
	}

	nauth, err := newNATSAuth(cfg.NKeys(), secrets.NATSToken, dataDir, log)
	if err != nil {
		return err
	}

	// 1. The broker.
	natsURL := strings.Join(cfg.NATS.URLs, ",")
	var embedded *broker.Broker
	if cfg.Embedded() {
		listen := cfg.NATS.Listen
		if o.NATSListen != "" {
			listen = o.NATSListen
		}
		b, err := broker.Start(ctx, broker.Options{Listen: listen, DataDir: filepath.Join(dataDir, "broker"), Token: secrets.NATSToken, TLS: ts.Broker, Users: nauth.brokerUsers(), Logger: log.With("component", "broker")})
		if err != nil {
			return err
		}
		defer b.Shutdown()
		nauth.attach(b)
		natsURL, embedded = b.ClientURL(), b
	}
	copts := []nats.Option{nats.Name("kanade-server"), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true)}
	if secrets.NATSToken != "" {
		copts = append(copts, nats.Token(secrets.NATSToken))
	}
	authOpts, err := nauth.clientOptions()
	if err != nil {
		return err
	}
	copts = append(copts, authOpts...)
	ownURL, ownTLS := ts.ownConnection(embedded, natsURL, log)
	nc, err := nats.Connect(ownURL, append(copts, ownTLS...)...)
	if err != nil {
		return fmt.Errorf("server: connecting to %s: %w", natsURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	bctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	changes, err := bootstrap.Setup(bctx, js, bootstrap.Options{Replicas: cfg.NATS.Replicas})
	cancel()
	if err != nil {
		return err
	}
	// Unset replicas keep what the cluster has (bootstrap leaves existing
	// counts alone): the server's own buckets follow the count the
	// streams ended up with, so a server.toml without `replicas = 3`
	// never scales an R3 cluster down to one copy.
	replicas := cfg.NATS.Replicas
	for _, c := range changes {
		if cfg.NATS.Replicas == 0 {
			replicas = max(replicas, c.Replicas)
		}
		if c.Action != bootstrap.Unchanged {
			log.Info("jetstream resource "+string(c.Action), "kind", c.Resource.Kind, "name", c.Resource.Name, "fields", c.Fields)
		}
	}

	// 2. The projection.
	st, err := store.Open(ctx, filepath.Join(dataDir, "kanade.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	proj, err := projector.New(projector.Options{JS: js, Store: st, NC: nc, Logger: log.With("component", "projector")})
	if err != nil {
		return err
	}
	var bg sync.WaitGroup
	bgCtx, stopBg := context.WithCancel(context.Background())
	defer func() { stopBg(); bg.Wait() }()
	bg.Go(func() {
		if err := proj.Run(bgCtx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("projector stopped", "err", err)
		}
	})
	policy, err := cfg.Retention.Policy()
	if err != nil {
		return err
	}
	ret := newRetainer(st, policy, log.With("component", "retention"), o.RetentionInterval)
	bg.Go(func() { ret.run(bgCtx) })

	// 3. Jobs, waves and schedules.
	fc, err := fleetclient.New(nc)
	if err != nil {
		return err
	}
	fc.Signer = signer // the executor and the scheduler publish through fc
	if err := jobs.Ensure(ctx, js, replicas); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	if err := scheduler.Ensure(ctx, js, replicas); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	catalog, err := jobs.OpenCatalog(ctx, js)
	if err != nil {
		return err
	}
	executor, err := jobs.NewExecutor(ctx, fc, api.StoreCounter{Store: st})
	if err != nil {
		return err
	}
	bg.Go(func() {
		if err := executor.Run(bgCtx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("wave executor stopped", "err", err)
		}
	})
	schedules, err := scheduler.OpenStore(ctx, js)
	if err != nil {
		return err
	}
	sched := scheduler.New(js, executor, storeFleet{st})
	bg.Go(func() {
		if err := sched.Run(bgCtx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("scheduler stopped", "err", err)
		}
	})

	// 4. The HTTP API.
	httpURL := ""
	var hs *http.Server
	if !o.NoHTTP {
		h, err := api.New(api.Deps{NC: nc, JS: js, Auth: auth, Logger: log.With("component", "api"), Store: st,
			Jobs: &api.Jobs{Catalog: catalog, Executor: executor}, Schedules: schedules, Metrics: metrics(st, proj, js, ret),
			CommandSigner: signer, Credentials: nauth.apiCredentials()})
		if err != nil {
			return err
		}
		ui, err := dashboard.New()
		if err != nil {
			return err
		}
		listen := cfg.HTTP.Listen
		if o.HTTPListen != "" {
			listen = o.HTTPListen
		}
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			return fmt.Errorf("server: HTTP listen %s: %w", listen, err)
		}
		httpURL = ts.httpURL(ln)
		hs = &http.Server{Handler: routeHTTP(h, ui), ReadHeaderTimeout: 10 * time.Second}
		bg.Go(func() {
			if err := ts.serve(hs, ln, log.With("component", "http")); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("HTTP server stopped", "err", err)
			}
		})
	}
	if o.Dev {
		log.Warn("DEV MODE: the HTTP API accepts every request without authentication; never expose it beyond this machine")
	}

	// 5. The dev agent.
	agentDone := make(chan error, 1)
	agentCtx, stopAgent := context.WithCancel(context.Background())
	defer stopAgent()
	id := o.AgentID
	if o.Dev {
		if id == "" {
			id = hostinfo.Hostname()
		}
		devOpts, err := nauth.devAgentOptions(id)
		if err != nil {
			return err
		}
		devURL, devTLS := ts.devAgentConnection(natsURL)
		a, err := agent.New(agent.Config{
			ID: id, NATSURLs: []string{devURL}, Token: secrets.NATSToken, NATSOptions: append(devTLS, devOpts...),
			DataDir: filepath.Join(dataDir, "agent"), Version: buildinfo.Version, Logger: log.With("component", "agent"),
		})
		if err != nil {
			return err
		}
		go func() { agentDone <- a.Run(agentCtx) }()
	} else {
		agentDone <- nil
	}

	if o.Out != nil {
		fmt.Fprint(o.Out, banner(natsURL, httpURL, dataDir, o, id))
		nauth.writeBanner(o.Out)
	}
	if o.Ready != nil {
		o.Ready(natsURL, httpURL)
	}
	<-ctx.Done()
	log.Info("shutting down")
	if hs != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = hs.Shutdown(sctx)
		cancel()
	}
	stopAgent()
	return <-agentDone
}

// routeHTTP sends the API, /healthz and /metrics to the API handler and
// every other path to the embedded dashboard.
func routeHTTP(apiHandler, ui http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/api/", apiHandler)
	mux.Handle("/healthz", apiHandler)
	mux.Handle("/metrics", apiHandler)
	mux.Handle("/", ui)
	return mux
}

// storeFleet lists a target's PCs from the agents table (for per_pc
// schedules).
type storeFleet struct{ st *store.Store }

func (f storeFleet) PCs(ctx context.Context, t jobs.Target) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	add := func(filter store.AgentFilter) error {
		for offset := 0; ; offset += 10_000 {
			filter.Limit, filter.Offset = 10_000, offset
			agents, total, err := f.st.ListAgents(ctx, filter)
			if err != nil {
				return err
			}
			for _, a := range agents {
				if !seen[a.PCID] {
					seen[a.PCID] = true
					out = append(out, a.PCID)
				}
			}
			if offset+len(agents) >= total || len(agents) == 0 {
				return nil
			}
		}
	}
	if t.All {
		err := add(store.AgentFilter{})
		return out, err
	}
	for _, g := range t.Groups {
		if err := add(store.AgentFilter{Group: g}); err != nil {
			return nil, err
		}
	}
	for _, pc := range t.PCs {
		if !seen[pc] {
			seen[pc] = true
			out = append(out, pc)
		}
	}
	return out, nil
}

// metrics adds the backend's figures to /metrics.
func metrics(st *store.Store, proj *projector.Projector, js jetstream.JetStream, ret *retainer) func(*api.MetricsWriter) {
	return func(m *api.MetricsWriter) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if online, offline, err := st.AgentCounts(ctx); err == nil {
			m.Gauge("kanade_agents", "Agents by state (online: a heartbeat within 3 intervals).", float64(online), "state", "online")
			m.Gauge("kanade_agents", "Agents by state (online: a heartbeat within 3 intervals).", float64(offline), "state", "offline")
		}
		ps := proj.Stats()
		for _, s := range ps.Streams {
			m.Gauge("kanade_projector_lag_messages", "Messages stored in a stream but not yet committed to SQLite.", float64(s.Lag), "stream", s.Stream)
			m.Counter("kanade_projector_applied_total", "Messages written to SQLite.", float64(s.Applied), "stream", s.Stream)
			m.Counter("kanade_projector_decode_errors_total", "Messages that could not be decoded (acked and skipped).", float64(s.DecodeErrors), "stream", s.Stream)
			m.Counter("kanade_projector_forged_total", "Messages refused because their payload pc_id disagrees with their subject's pc (impersonation attempts).", float64(s.Forged), "stream", s.Stream)
		}
		m.Counter("kanade_heartbeats_received_total", "Heartbeats received.", float64(ps.Heartbeats.Received))
		m.Counter("kanade_projector_forged_total", "Messages refused because their payload pc_id disagrees with their subject's pc (impersonation attempts).", float64(ps.Heartbeats.Forged), "stream", "heartbeat")
		m.Gauge("kanade_projector_heartbeat_lag_seconds", "Receipt-to-commit age of the oldest heartbeat in the last flush (how far the agents table trails the fleet).", ps.Heartbeats.LastLag.Seconds())
		m.Gauge("kanade_projector_heartbeat_lag_max_seconds", "Largest heartbeat receipt-to-commit age since start.", ps.Heartbeats.MaxLag.Seconds())
		writeResultsMetric(m, ps.Results)
		ret.writeMetrics(m)
		for _, name := range []string{wire.StreamExec, wire.StreamResults, wire.StreamEvents, wire.StreamObs, wire.StreamInventory, wire.StreamAudit} {
			s, err := js.Stream(ctx, name)
			if err != nil {
				continue
			}
			info := s.CachedInfo()
			m.Gauge("kanade_stream_messages", "Messages in a JetStream stream.", float64(info.State.Msgs), "stream", name)
			m.Gauge("kanade_stream_bytes", "Bytes in a JetStream stream.", float64(info.State.Bytes), "stream", name)
		}
	}
}

func banner(natsURL, httpURL, dataDir string, o Options, id string) string {
	var s strings.Builder
	fmt.Fprintf(&s, "kanade %s is up.\n  broker (NATS + JetStream): %s\n", buildinfo.Version, natsURL)
	if httpURL != "" {
		fmt.Fprintf(&s, "  dashboard: %s/\n", httpURL)
		fmt.Fprintf(&s, "  HTTP API: %s/api/  (metrics: %s/metrics)\n", httpURL, httpURL)
	}
	fmt.Fprintf(&s, "  data dir: %s\n", dataDir)
	s.WriteString(devTLSNote(o, dataDir))
	if o.Dev {
		fmt.Fprintf(&s, "  local agent: %s\n\nTry, in another terminal:\n", id)
		server := ""
		if natsURL != "nats://127.0.0.1:4222" {
			server = " --server " + natsURL
		}
		server += devTLSFlags(o, dataDir)
		fmt.Fprintf(&s, "  go run ./cmd/kanade%s ping %s\n", server, id)
		fmt.Fprintf(&s, "  go run ./cmd/kanade%s run %s -- echo hi\n", server, id)
		fmt.Fprintf(&s, "  go run ./cmd/kanade%s run --all -- hostname\n", server)
		fmt.Fprintf(&s, "  go run ./cmd/kanade%s jetstream status\n", server)
		if httpURL != "" {
			fmt.Fprintf(&s, "  curl%s %s/api/agents\n", devCurlFlags(o, dataDir), httpURL)
		}
	}
	s.WriteString("\nCtrl-C stops it.\n")
	return s.String()
}
