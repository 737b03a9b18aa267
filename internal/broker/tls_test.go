package broker_test

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-project/kanade/internal/broker"
	"github.com/kanade-project/kanade/internal/devca"
	"github.com/kanade-project/kanade/internal/tlsconf"
)

// TestTLSBroker: with TLS set, the embedded broker speaks TLS only; a
// client that trusts its CA works, anything else is refused, each for its
// own stated reason.
func TestTLSBroker(t *testing.T) {
	p, err := devca.Generate(t.TempDir(), []string{"localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := devca.Generate(t.TempDir(), []string{"localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	srvTLS, err := tlsconf.Server(p.Cert, p.Key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.Start(context.Background(), broker.Options{Listen: "127.0.0.1:0", DataDir: t.TempDir(), TLS: srvTLS})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	if !strings.HasPrefix(b.ClientURL(), "tls://") {
		t.Errorf("ClientURL %q: want tls://", b.ClientURL())
	}
	url := "nats://" + b.Addr()

	trust := func(ca string) nats.Option {
		cfg, err := tlsconf.Client(tlsconf.ClientOptions{CAFile: ca})
		if err != nil {
			t.Fatal(err)
		}
		return nats.Secure(cfg)
	}
	var unknown x509.UnknownAuthorityError
	for _, tc := range []struct {
		name string
		opts []nats.Option
		want func(error) bool // nil: connects
	}{
		{"the right CA", []nats.Option{trust(p.CA)}, nil},
		{"another CA", []nats.Option{trust(other.CA)}, func(err error) bool { return errors.As(err, &unknown) }},
		// nats.go upgrades to TLS when the server demands it, verifying
		// against the system's roots, which do not know a private CA.
		{"no CA given", nil, func(err error) bool { return errors.As(err, &unknown) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := nats.Connect(url, append(tc.opts, nats.Timeout(10*time.Second))...)
			if tc.want != nil {
				if err == nil {
					nc.Close()
					t.Fatal("connected")
				}
				if !tc.want(err) {
					t.Fatalf("refused with an unexpected error: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			if _, err := nc.TLSConnectionState(); err != nil {
				t.Fatalf("connection is not TLS: %v", err)
			}
			sub, err := nc.SubscribeSync("tls.test")
			if err != nil {
				t.Fatal(err)
			}
			if err := nc.Publish("tls.test", []byte("hi")); err != nil {
				t.Fatal(err)
			}
			if m, err := sub.NextMsg(10 * time.Second); err != nil || string(m.Data) != "hi" {
				t.Fatalf("round trip: %v %v", m, err)
			}
		})
	}

	// A plaintext client: the server announces tls_required, and answers
	// protocol in the clear with a closed connection, never a PONG.
	t.Run("plaintext", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", b.Addr(), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		r := bufio.NewReader(c)
		info, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(info, "INFO ") || !strings.Contains(info, `"tls_required":true`) {
			t.Fatalf("INFO = %q, want tls_required", info)
		}
		if _, err := io.WriteString(c, "CONNECT {\"verbose\":false}\r\nPING\r\n"); err != nil {
			t.Fatal(err)
		}
		rest, err := io.ReadAll(r)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the server neither answered nor closed the plaintext connection")
		}
		if strings.Contains(string(rest), "PONG") {
			t.Fatalf("the server spoke plaintext NATS: %q", rest)
		}
	})
}
