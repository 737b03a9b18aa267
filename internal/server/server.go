// Package server is `kanade server`: the embedded broker with every
// JetStream resource bootstrapped and, in dev mode, an in-process agent for
// this machine, so that one command gives a working fleet of one.
//
// Run returns only after everything it started has stopped: the agent first
// (its last results still reach the broker), then the broker.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/agent"
	"github.com/kanade-project/kanade/internal/bootstrap"
	"github.com/kanade-project/kanade/internal/broker"
	"github.com/kanade-project/kanade/internal/buildinfo"
	"github.com/kanade-project/kanade/internal/hostinfo"
)

// Options configure a server run.
type Options struct {
	DataDir    string
	NATSListen string
	// Token protects the embedded broker; empty means no auth (dev).
	Token string
	// Dev also runs an in-process agent for this machine.
	Dev bool
	// AgentID overrides the dev agent's pc_id (default: the hostname).
	AgentID string
	Logger  *slog.Logger
	// Out receives the human-readable start-up banner.
	Out io.Writer
	// Ready, when set, is called once everything is up (tests).
	Ready func(clientURL string)
}

// Run starts the system and blocks until ctx is cancelled.
func Run(ctx context.Context, o Options) error {
	if o.DataDir == "" {
		return errors.New("server: a data dir is required")
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	b, err := broker.Start(ctx, broker.Options{
		Listen:  o.NATSListen,
		DataDir: filepath.Join(o.DataDir, "broker"),
		Token:   o.Token,
		Logger:  log.With("component", "broker"),
	})
	if err != nil {
		return err
	}
	defer b.Shutdown()

	copts := []nats.Option{nats.Name("kanade-server")}
	if o.Token != "" {
		copts = append(copts, nats.Token(o.Token))
	}
	nc, err := nats.Connect(b.ClientURL(), copts...)
	if err != nil {
		return fmt.Errorf("server: connecting to the embedded broker: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	bctx, cancel := context.WithTimeout(ctx, time.Minute)
	changes, err := bootstrap.Setup(bctx, js, bootstrap.Options{})
	cancel()
	if err != nil {
		return err
	}
	for _, c := range changes {
		if c.Action != bootstrap.Unchanged {
			log.Info("jetstream resource "+string(c.Action), "kind", c.Resource.Kind, "name", c.Resource.Name, "fields", c.Fields)
		}
	}

	agentDone := make(chan error, 1)
	agentCtx, stopAgent := context.WithCancel(context.Background())
	defer stopAgent()
	id := o.AgentID
	if o.Dev {
		if id == "" {
			id = hostinfo.Hostname()
		}
		a, err := agent.New(agent.Config{
			ID:       id,
			NATSURLs: []string{b.ClientURL()},
			Token:    o.Token,
			DataDir:  filepath.Join(o.DataDir, "agent"),
			Version:  buildinfo.Version,
			Logger:   log.With("component", "agent"),
		})
		if err != nil {
			return err
		}
		go func() { agentDone <- a.Run(agentCtx) }()
	} else {
		agentDone <- nil
	}

	if o.Out != nil {
		fmt.Fprint(o.Out, banner(b.ClientURL(), o, id))
	}
	if o.Ready != nil {
		o.Ready(b.ClientURL())
	}
	<-ctx.Done()
	log.Info("shutting down")
	stopAgent()
	return <-agentDone
}

func banner(url string, o Options, id string) string {
	var s strings.Builder
	fmt.Fprintf(&s, "kanade %s is up.\n  broker (NATS + JetStream): %s\n  data dir: %s\n", buildinfo.Version, url, o.DataDir)
	if o.Dev {
		fmt.Fprintf(&s, "  local agent: %s\n\nTry, in another terminal:\n", id)
		server := ""
		if url != "nats://127.0.0.1:4222" {
			server = " --server " + url
		}
		fmt.Fprintf(&s, "  go run ./cmd/kanade%s ping %s\n", server, id)
		fmt.Fprintf(&s, "  go run ./cmd/kanade%s run %s -- echo hi\n", server, id)
		fmt.Fprintf(&s, "  go run ./cmd/kanade%s run --all -- hostname\n", server)
		fmt.Fprintf(&s, "  go run ./cmd/kanade%s jetstream status\n", server)
	}
	s.WriteString("\nCtrl-C stops it.\n")
	return s.String()
}
