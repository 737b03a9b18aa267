package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/devca"
	"github.com/kanade-project/kanade/internal/logtest"
	"github.com/kanade-project/kanade/internal/server"
	"github.com/kanade-project/kanade/internal/serverconfig"
	"github.com/kanade-project/kanade/internal/tlsconf"
	"github.com/kanade-project/kanade/internal/wire"
)

func devPKI(t *testing.T) devca.Paths {
	t.Helper()
	p, err := devca.Generate(t.TempDir(), []string{"localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func parseConfig(t *testing.T, toml string) *serverconfig.Config {
	t.Helper()
	c, err := serverconfig.Parse([]byte(toml))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func clientTLS(t *testing.T, ca string) *tls.Config {
	t.Helper()
	c, err := tlsconf.Client(tlsconf.ClientOptions{CAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestServerTLSFromConfig: certificates named in server.toml make the
// embedded broker and the API TLS-only; the server's own connection to
// its broker (in-process) still bootstraps everything.
func TestServerTLSFromConfig(t *testing.T) {
	t.Setenv(serverconfig.EnvAPIToken, token)
	p, other := devPKI(t), devPKI(t)
	cfg := parseConfig(t, fmt.Sprintf("[nats]\ntls_cert_file = '%s'\ntls_key_file = '%s'\n[http]\ntls_cert_file = '%[1]s'\ntls_key_file = '%[2]s'\n", p.Cert, p.Key))
	r := startServerWith(t, server.Options{Config: cfg, DataDir: t.TempDir(), NATSListen: "127.0.0.1:0"})
	if !strings.HasPrefix(r.natsURL, "tls://") || !strings.HasPrefix(r.httpURL, "https://") {
		t.Fatalf("URLs %s, %s: want tls:// and https://", r.natsURL, r.httpURL)
	}

	t.Run("broker", func(t *testing.T) {
		nc, err := nats.Connect(r.natsURL, nats.Secure(clientTLS(t, p.CA)))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := js.Stream(ctx, wire.StreamExec); err != nil {
			t.Fatalf("the server did not bootstrap its TLS broker: %v", err)
		}
		var unknown x509.UnknownAuthorityError
		if nc, err := nats.Connect(r.natsURL, nats.Secure(clientTLS(t, other.CA))); err == nil || !errors.As(err, &unknown) {
			if nc != nil {
				nc.Close()
			}
			t.Fatalf("a client trusting another CA: %v, want x509.UnknownAuthorityError", err)
		}
	})

	t.Run("API", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			ca   string
			ok   bool
		}{
			{"the CA", p.CA, true},
			{"another CA", other.CA, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				tr := http.DefaultTransport.(*http.Transport).Clone()
				tr.TLSClientConfig = clientTLS(t, tc.ca)
				defer tr.CloseIdleConnections()
				resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(r.httpURL + "/healthz")
				if !tc.ok {
					var unknown x509.UnknownAuthorityError
					if err == nil || !errors.As(err, &unknown) {
						t.Fatalf("GET /healthz: %v, want x509.UnknownAuthorityError", err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
					t.Fatalf("GET /healthz: %d over %+v", resp.StatusCode, resp.TLS)
				}
			})
		}
	})
}

// TestServerOnExternalTLSBroker: with [nats] ca_file the server verifies
// an external broker against that CA; with the wrong one it logs why it
// cannot connect instead of waiting silently.
func TestServerOnExternalTLSBroker(t *testing.T) {
	p, other := devPKI(t), devPKI(t)
	srvTLS, err := tlsconf.Server(p.Cert, p.Key)
	if err != nil {
		t.Fatal(err)
	}
	ext := brokertest.StartTLS(t, srvTLS, clientTLS(t, p.CA))
	external := func(ca string) *serverconfig.Config {
		return parseConfig(t, fmt.Sprintf("[nats]\nurls = [%q]\nca_file = '%s'\n", ext.URL(), ca))
	}

	t.Run("the right CA", func(t *testing.T) {
		startServerWith(t, server.Options{Config: external(p.CA), DataDir: t.TempDir(), NoHTTP: true})
	})
	t.Run("another CA", func(t *testing.T) {
		logs := &logtest.Buffer{}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- server.Run(ctx, server.Options{Config: external(other.CA), DataDir: t.TempDir(), NoHTTP: true,
				Logger: slog.New(slog.NewTextHandler(logs, nil)), Ready: func(string, string) { t.Error("the server started on a broker it cannot verify") }})
		}()
		defer func() {
			cancel()
			<-done
		}()
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(logs.String(), "unknown authority") || !strings.Contains(logs.String(), "ca_file") {
			if time.Now().After(deadline) {
				t.Fatalf("no log line says why the broker is refused:\n%s", logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func TestServerTLSOptionErrors(t *testing.T) {
	p := devPKI(t)
	withCert := fmt.Sprintf("[nats]\ntls_cert_file = '%s'\ntls_key_file = '%s'\n", p.Cert, p.Key)
	badKey := filepath.Join(t.TempDir(), "bad.key")
	if err := os.WriteFile(badKey, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		o    server.Options
		want []string
	}{
		{"--tls without --dev", server.Options{DevTLS: true}, []string{"--tls", "needs --dev", "tls_cert_file"}},
		{"--tls with an external broker", server.Options{Dev: true, DevTLS: true, Config: parseConfig(t, "[nats]\nurls = [\"nats://127.0.0.1:1\"]\n")}, []string{"--tls", "external"}},
		{"--tls with a configured certificate", server.Options{Dev: true, DevTLS: true, Config: parseConfig(t, withCert)}, []string{"--tls", "tls_cert_file"}},
		{"--dev with a TLS broker and no CA", server.Options{Dev: true, Config: parseConfig(t, withCert)}, []string{"--dev", "ca_file", "dev agent"}},
		{"an unreadable key", server.Options{NoHTTP: true, Config: parseConfig(t, fmt.Sprintf("[nats]\ntls_cert_file = '%s'\ntls_key_file = '%s'\n", p.Cert, badKey))},
			[]string{"[nats] tls_cert_file / tls_key_file", badKey, "no PEM data"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.DataDir = t.TempDir()
			tc.o.Logger = slog.New(slog.DiscardHandler)
			tc.o.Ready = func(string, string) { t.Error("the server started") }
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			err := server.Run(ctx, tc.o)
			if err == nil {
				t.Fatal("Run returned no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
