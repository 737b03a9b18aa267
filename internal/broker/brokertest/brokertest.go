// Package brokertest starts a real embedded nats-server with JetStream for
// tests, in one line, on a random loopback port with a temporary store;
// StartCluster starts several as one JetStream cluster, each node stoppable
// and restartable for failover tests.
package brokertest

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/bootstrap"
	"github.com/kanade-project/kanade/internal/broker"
)

// Server is a test broker that can be stopped and restarted on the same
// port and store, for fault injection.
type Server struct {
	t       testing.TB
	dataDir string
	listen  string
	B       *broker.Broker
	// tls is served when set; clientTLS is what Connect trusts (tls.go).
	tls, clientTLS *tls.Config
	// roles is set by StartWithRoles.
	roles *Roles
}

// Start starts a broker, bootstraps every kanade resource, and stops it
// when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := StartBare(t)
	Bootstrap(t, s)
	return s
}

// Bootstrap creates every kanade JetStream resource on s.
func Bootstrap(t testing.TB, s *Server) {
	t.Helper()
	nc := s.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := bootstrap.Setup(ctx, js, bootstrap.Options{}); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
}

// StartBare starts a broker without creating any JetStream resource.
func StartBare(t testing.TB) *Server {
	t.Helper()
	return StartBareAt(t, freeAddr(t))
}

// StartBareAt starts a broker without resources on a given host:port.
func StartBareAt(t testing.TB, listen string) *Server {
	t.Helper()
	s := &Server{t: t, dataDir: t.TempDir(), listen: listen}
	s.Restart()
	t.Cleanup(s.Stop)
	return s
}

// URL is the client URL; stable across Restart.
func (s *Server) URL() string { return "nats://" + s.listen }

// Listen is the host:port the broker listens on; stable across Restart.
func (s *Server) Listen() string { return s.listen }

// Stop shuts the broker down (idempotent).
func (s *Server) Stop() {
	if s.B != nil {
		s.B.Shutdown()
		s.B = nil
	}
}

// Restart starts the broker again on the same port and store.
func (s *Server) Restart() {
	s.t.Helper()
	if s.B != nil {
		s.t.Fatal("brokertest: Restart while running")
	}
	var err error
	// The port was just released; another process may briefly hold it,
	// so retry for a while rather than fail the test.
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.B, err = broker.Start(context.Background(), broker.Options{Listen: s.listen, DataDir: s.dataDir, MaxStore: 64 << 30, TLS: s.tls, Users: s.roles.users()})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("brokertest: %v", err)
	}
}

// Connect opens a client connection closed at the end of the test.
func (s *Server) Connect(t testing.TB, opts ...nats.Option) *nats.Conn {
	t.Helper()
	opts = append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}, append(s.roles.backend(t), opts...)...)
	if s.clientTLS != nil {
		opts = append([]nats.Option{nats.Secure(s.clientTLS)}, opts...)
	}
	nc, err := nats.Connect(s.URL(), opts...)
	if err != nil {
		t.Fatalf("brokertest: connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JetStream returns a JetStream context on a fresh connection.
func (s *Server) JetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(s.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprintf("127.0.0.1:%d", l.Addr().(*net.TCPAddr).Port)
}
