package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/kanade-project/kanade/internal/broker"
	"github.com/kanade-project/kanade/internal/devca"
	"github.com/kanade-project/kanade/internal/serverconfig"
	"github.com/kanade-project/kanade/internal/tlsconf"
)

// tlsSetup is the TLS material of one run; a nil config means plaintext.
type tlsSetup struct{ serverconfig.TLS }

// DevTLSDir is where --dev --tls keeps its CA and certificate, under the
// data dir: made on the first run, reused after, so that clients given
// ca.pem once keep connecting.
func DevTLSDir(dataDir string) string { return filepath.Join(dataDir, "tls") }

// loadTLS reads server.toml's TLS files, or with DevTLS makes (once) the
// development CA and serves its certificate on both the broker and the API.
func loadTLS(cfg *serverconfig.Config, o Options, dataDir string) (tlsSetup, error) {
	if !o.DevTLS {
		t, err := cfg.LoadTLS()
		if err != nil {
			return tlsSetup{}, err
		}
		if o.Dev && t.Broker != nil && t.Client == nil {
			return tlsSetup{}, errors.New("--dev with [nats] tls_cert_file: set [nats] ca_file too, the CA the dev agent verifies the broker against (or use --dev --tls for a generated one)")
		}
		return tlsSetup{TLS: t}, nil
	}
	switch {
	case !o.Dev:
		return tlsSetup{}, errors.New("--tls generates a development CA and needs --dev; in production set [nats] and [http] tls_cert_file / tls_key_file in server.toml")
	case !cfg.Embedded():
		return tlsSetup{}, errors.New("--tls secures the embedded broker, but server.toml names an external one: configure its TLS there and set [nats] ca_file")
	case cfg.NATS.TLSCertFile != "" || cfg.HTTP.TLSCertFile != "":
		return tlsSetup{}, errors.New("--tls generates its own certificate, but server.toml names one (tls_cert_file): drop one or the other")
	}
	p, err := devca.Ensure(DevTLSDir(dataDir), devca.DefaultHosts())
	if err != nil {
		return tlsSetup{}, fmt.Errorf("--tls: %w", err)
	}
	srv, err := tlsconf.Server(p.Cert, p.Key)
	if err != nil {
		return tlsSetup{}, fmt.Errorf("--tls: %w", err)
	}
	client, err := tlsconf.Client(tlsconf.ClientOptions{CAFile: p.CA})
	if err != nil {
		return tlsSetup{}, fmt.Errorf("--tls: %w", err)
	}
	// One certificate for both listeners; each server gets its own copy
	// of the config (http.Server adds its ALPN protocols to it).
	return tlsSetup{serverconfig.TLS{Broker: srv, HTTP: srv.Clone(), Client: client}}, nil
}

// ownConnection is how the server's own client reaches the broker. To its
// embedded TLS broker it connects in-process: the certificate need not
// name the loopback or listen address, and nothing leaves the process to
// be encrypted. To an external broker it verifies the server against
// [nats] ca_file when set, and logs why the first attempt failed: the
// connection is retried in the background, so a refused certificate would
// otherwise show only as a bootstrap that times out.
func (t tlsSetup) ownConnection(b *broker.Broker, natsURL string, log *slog.Logger) (string, []nats.Option) {
	if b != nil && t.Broker != nil {
		// nats:// keeps nats.go from starting TLS on the in-process
		// connection (the broker offers it there but does not require it).
		return "nats://" + b.Addr(), []nats.Option{nats.InProcessServer(b.Server())}
	}
	opts := []nats.Option{nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
		if errors.Is(err, nats.ErrTLS) {
			log.Error("cannot connect to the broker: TLS failed (check [nats] ca_file and the broker's certificate)", "url", natsURL, "err", err)
		}
	})}
	if t.Client != nil {
		opts = append(opts, nats.Secure(t.Client))
	}
	return natsURL, opts
}

// devAgentConnection is the URL and options of the dev agent: over TLS,
// verified like any agent, when the broker serves TLS. A wildcard listen
// address (0.0.0.0, ::) is dialled as 127.0.0.1, which the development
// certificate names.
func (t tlsSetup) devAgentConnection(natsURL string) (string, []nats.Option) {
	if t.Broker == nil {
		return natsURL, nil
	}
	if u, err := url.Parse(natsURL); err == nil {
		if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsUnspecified() {
			u.Host = net.JoinHostPort("127.0.0.1", u.Port())
			natsURL = u.String()
		}
	}
	return natsURL, []nats.Option{nats.Secure(t.Client)}
}

// httpURL is the base URL of the API listening on ln.
func (t tlsSetup) httpURL(ln net.Listener) string {
	scheme := "http://"
	if t.HTTP != nil {
		scheme = "https://"
	}
	return scheme + ln.Addr().String()
}

// serve serves hs on ln, with TLS when the setup has it. Failed handshakes
// (a client that does not trust the certificate, a scanner) are logged as
// warnings of the server's log, not on the process's standard error.
func (t tlsSetup) serve(hs *http.Server, ln net.Listener, log *slog.Logger) error {
	if t.HTTP == nil {
		return hs.Serve(ln)
	}
	hs.TLSConfig = t.HTTP
	hs.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	return hs.ServeTLS(ln, "", "")
}

// devCA is the CA certificate of --dev --tls, or "".
func devCA(o Options, dataDir string) string {
	if !o.DevTLS {
		return ""
	}
	return devca.PathsIn(DevTLSDir(dataDir)).CA
}

// devTLSNote is the banner's line about --dev --tls.
func devTLSNote(o Options, dataDir string) string {
	ca := devCA(o, dataDir)
	if ca == "" {
		return ""
	}
	return fmt.Sprintf("  TLS: broker and API serve a certificate of the development CA %s\n       (clients: --nats-ca / --api-ca, or KANADE_NATS_CA / KANADE_API_CA)\n", ca)
}

// devTLSFlags are the CLI flags of the banner's examples under --dev --tls.
func devTLSFlags(o Options, dataDir string) string {
	if ca := devCA(o, dataDir); ca != "" {
		return " --nats-ca " + quoteArg(ca)
	}
	return ""
}

// devCurlFlags are curl's flags of the banner's example under --dev --tls.
func devCurlFlags(o Options, dataDir string) string {
	if ca := devCA(o, dataDir); ca != "" {
		return " --cacert " + quoteArg(ca)
	}
	return ""
}

func quoteArg(s string) string {
	if strings.ContainsAny(s, " \t'\"") {
		return "'" + s + "'"
	}
	return s
}
