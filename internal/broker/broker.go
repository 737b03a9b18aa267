// Package broker runs nats-server with JetStream inside the kanade server
// process, so one command gives a working system with no other server to
// install.
//
// Start returns only when the server accepts client connections and
// JetStream is enabled, or with an error; it never leaves a half-started
// server behind. Limits are explicit: left unset, an embedded JetStream
// claims 75 % of RAM and disk.
//
// Only the backend links this package: the agent stays a client.
package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/kanade-project/kanade/internal/natsauth"
)

// DefaultListen is where the embedded broker listens unless told otherwise.
const DefaultListen = "127.0.0.1:4222"

// Options configure an embedded broker.
type Options struct {
	// Listen is host:port; port 0 or -1 picks a free port.
	Listen string
	// DataDir holds the JetStream store (in DataDir/jetstream).
	DataDir string
	// Name is the server name; default "kanade".
	Name string
	// Token, when set, is required from every client.
	Token string
	// TLS, when set, makes every client connection use TLS (see tls.go).
	TLS *tls.Config
	// Users, when set, replaces the token with NKey users, each held to
	// its role's permissions (internal/natsauth); SetUsers changes them
	// on the running server. Token and Users cannot both be set.
	Users []natsauth.User
	// MaxStore and MaxMemory cap JetStream; defaults 64 GiB and 256 MiB.
	// The store cap must cover the sum of the streams' byte caps, because
	// JetStream reserves each stream's MaxBytes up front.
	MaxStore  int64
	MaxMemory int64
	// SyncAlways fsyncs every JetStream write. Off by default: PubAcked data
	// is in the OS page cache and survives a broker crash; only an OS crash
	// within the sync interval (2 min) can lose it.
	SyncAlways bool
	// ReadyTimeout bounds start-up; default 10 s.
	ReadyTimeout time.Duration
	// Logger receives the server's log lines at Debug/Info/Warn/Error;
	// nil discards them.
	Logger *slog.Logger
	// Configure, when set, may adjust the server options last (tests,
	// clustering).
	Configure func(*server.Options)
}

// Broker is a running embedded nats-server.
type Broker struct {
	srv *server.Server
	// opts are the options the server runs with; SetUsers reloads a
	// copy with other users.
	opts   *server.Options
	optsMu sync.Mutex
}

// Start starts the server and waits until it is ready for clients.
func Start(ctx context.Context, o Options) (*Broker, error) {
	if o.DataDir == "" {
		return nil, errors.New("broker: DataDir is required")
	}
	listen := o.Listen
	if listen == "" {
		listen = DefaultListen
	}
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("broker: listen address %q: expected HOST:PORT: %w", listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("broker: listen port %q is not a number", portStr)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	name := o.Name
	if name == "" {
		name = "kanade"
	}
	sopts := &server.Options{
		ServerName:         name,
		Host:               host,
		Port:               port,
		JetStream:          true,
		StoreDir:           filepath.Join(o.DataDir, "jetstream"),
		JetStreamMaxStore:  orDefault(o.MaxStore, 64<<30),
		JetStreamMaxMemory: orDefault(o.MaxMemory, 256<<20),
		SyncAlways:         o.SyncAlways,
		Authorization:      o.Token,
		NoSigs:             true, // the host process owns signals
		MaxPayload:         server.MAX_PAYLOAD_SIZE,
		HTTPPort:           0,
	}
	applyTLS(sopts, o.TLS)
	if err := applyUsers(sopts, o); err != nil {
		return nil, err
	}
	if o.Configure != nil {
		o.Configure(sopts)
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	if o.Logger != nil {
		srv.SetLoggerV2(&slogAdapter{l: o.Logger}, false, false, false)
	}
	go srv.Start()
	timeout := o.ReadyTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	deadline, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for !srv.ReadyForConnections(50 * time.Millisecond) {
		if deadline.Err() != nil {
			srv.Shutdown()
			return nil, fmt.Errorf("broker: not ready for connections on %s after %s (port in use?)", listen, timeout)
		}
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		return nil, errors.New("broker: JetStream failed to start (check the data dir is writable)")
	}
	return &Broker{srv: srv, opts: sopts}, nil
}

func orDefault(v, d int64) int64 {
	if v > 0 {
		return v
	}
	return d
}

// ClientURL is the URL clients connect to.
func (b *Broker) ClientURL() string { return b.srv.ClientURL() }

// Addr is the bound client address (useful with a random port).
func (b *Broker) Addr() string { return b.srv.Addr().String() }

// Server exposes the underlying nats-server (tests, monitoring).
func (b *Broker) Server() *server.Server { return b.srv }

// Shutdown stops the server and waits until it has stopped.
func (b *Broker) Shutdown() {
	b.srv.Shutdown()
	b.srv.WaitForShutdown()
}

type slogAdapter struct{ l *slog.Logger }

func (a *slogAdapter) Noticef(format string, v ...any) { a.l.Info(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Warnf(format string, v ...any)   { a.l.Warn(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Fatalf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Errorf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Debugf(format string, v ...any)  { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Tracef(format string, v ...any)  {}
