package cli_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/cli"
	"github.com/kanade-project/kanade/internal/devca"
	"github.com/kanade-project/kanade/internal/server"
	"github.com/kanade-project/kanade/internal/tlsconf"
)

// TestDevTLSQuickStart: `kanade server --dev --tls` serves the broker and
// the API over TLS with a CA made under the data dir, its dev agent
// connects over TLS, and the CLI works with that CA and fails without it,
// saying what to pass.
func TestDevTLSQuickStart(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", home)
	for _, env := range []string{cli.EnvNATSCA, cli.EnvAPICA, "KANADE_API_URL", "KANADE_API_TOKEN"} {
		t.Setenv(env, "")
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan [2]string, 1)
	done := make(chan error, 1)
	var banner bytes.Buffer
	dataDir := t.TempDir()
	go func() {
		done <- server.Run(ctx, server.Options{
			DataDir: dataDir, NATSListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", Dev: true, DevTLS: true, AgentID: "tls-pc",
			Logger: slog.New(slog.DiscardHandler), Out: &banner, Ready: func(n, h string) { ready <- [2]string{n, h} },
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	var natsURL, httpURL string
	select {
	case u := <-ready:
		natsURL, httpURL = u[0], u[1]
	case err := <-done:
		t.Fatalf("server stopped: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("server not ready")
	}
	ca := devca.PathsIn(server.DevTLSDir(dataDir)).CA
	if !strings.HasPrefix(natsURL, "tls://") || !strings.HasPrefix(httpURL, "https://") {
		t.Fatalf("URLs %s and %s: want tls:// and https://", natsURL, httpURL)
	}
	if !strings.Contains(banner.String(), "--nats-ca "+ca) || !strings.Contains(banner.String(), "--cacert "+ca) {
		t.Errorf("the banner does not show how to trust the CA:\n%s", banner.String())
	}
	other, err := devca.Generate(t.TempDir(), []string{"localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}

	kanade := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := cli.Main(args, strings.NewReader("any-token\n"), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	// The dev agent connects asynchronously, over TLS (the broker takes
	// nothing else): wait until it answers a ping.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, out, _ := kanade("--server", natsURL, "--nats-ca", ca, "ping", "tls-pc", "--timeout", "500ms")
		if code == 0 && strings.Contains(out, "tls-pc answered") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dev agent never answered over TLS: %d %s", code, out)
		}
	}

	for _, tc := range []struct {
		name     string
		env      map[string]string
		args     []string
		wantCode int
		wantOut  string
		wantErr  []string
	}{
		{name: "run with the CA", args: []string{"--server", natsURL, "--nats-ca", ca, "run", "tls-pc", "--", "echo", "hi"}, wantOut: "hi\n"},
		{name: "run with the CA from the environment", env: map[string]string{cli.EnvNATSCA: ca}, args: []string{"--server", natsURL, "run", "tls-pc", "--", "echo", "env"}, wantOut: "env\n"},
		{name: "broker without the CA", args: []string{"--server", natsURL, "ping", "tls-pc"}, wantCode: 1,
			wantErr: []string{"x509", "not signed by a CA this command trusts", "--nats-ca", cli.EnvNATSCA}},
		{name: "broker with another CA", args: []string{"--server", natsURL, "--nats-ca", other.CA, "ping", "tls-pc"}, wantCode: 1,
			wantErr: []string{"unknown authority", "--nats-ca"}},
		{name: "missing CA file", args: []string{"--server", natsURL, "--nats-ca", filepath.Join(t.TempDir(), "nope.pem"), "ping", "tls-pc"}, wantCode: 2,
			wantErr: []string{"--nats-ca", "nope.pem does not exist"}},
		{name: "API with the CA", args: []string{"job", "list", "--api", httpURL, "--api-ca", ca}, wantOut: "ID"},
		{name: "API with the CA from the environment", env: map[string]string{cli.EnvAPICA: ca, "KANADE_API_URL": httpURL}, args: []string{"schedule", "list"}, wantOut: "ID"},
		{name: "login with the CA", args: []string{"login", "--api", httpURL, "--api-ca", ca}, wantOut: "logged in to " + httpURL},
		{name: "API without the CA", args: []string{"job", "list", "--api", httpURL}, wantCode: 1,
			wantErr: []string{"certificate", "--api-ca", cli.EnvAPICA}},
		{name: "API with another CA", args: []string{"job", "list", "--api", httpURL, "--api-ca", other.CA}, wantCode: 1,
			wantErr: []string{"unknown authority", "--api-ca"}},
		{name: "a CA for plain http", args: []string{"job", "list", "--api", "http://127.0.0.1:1", "--api-ca", ca}, wantCode: 2,
			wantErr: []string{"--api-ca", "not https://"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, out, errOut := kanade(tc.args...)
			ok := code == tc.wantCode && strings.Contains(out, tc.wantOut)
			for _, w := range tc.wantErr {
				ok = ok && strings.Contains(errOut, w)
			}
			if !ok {
				t.Fatalf("kanade %s = %d\nstdout: %s\nstderr: %s\nwant %d, stdout with %q, stderr with %q",
					strings.Join(tc.args, " "), code, out, errOut, tc.wantCode, tc.wantOut, tc.wantErr)
			}
		})
	}
}

func TestTLSCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	kanade := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := cli.Main(args, strings.NewReader(""), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	code, out, errOut := kanade("tls", "dev", "--dir", dir, "--host", "kanade.lab.internal", "--host", "192.0.2.10")
	if code != 0 {
		t.Fatalf("tls dev = %d: %s", code, errOut)
	}
	p := devca.PathsIn(dir)
	for _, want := range []string{p.CA, p.Cert, p.Key, "kanade.lab.internal", "192.0.2.10", "tls_cert_file", "nats_ca_file", "--nats-ca", "--api-ca"} {
		if !strings.Contains(out, want) {
			t.Errorf("tls dev output lacks %q:\n%s", want, out)
		}
	}
	for _, f := range []string{p.CAKey, p.Key} {
		key, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, strings.Split(string(key), "\n")[1]) {
			t.Fatalf("tls dev printed the key %s", f)
		}
	}
	certs, err := tlsconf.LoadCertificates(p.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if err := certs[0].VerifyHostname("kanade.lab.internal"); err != nil {
		t.Errorf("the certificate does not name --host: %v", err)
	}
	pin := tlsconf.Pin(certs[0])

	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{"pin", []string{"tls", "pin", p.Cert}, 0, pin + "  CN=kanade development server", ""},
		{"pin of a chain and a CA", []string{"tls", "pin", p.Cert, p.CA}, 0, "CN=kanade development CA", ""},
		{"pin of a key", []string{"tls", "pin", p.Key}, 1, "", "holds a private key"},
		{"pin of nothing", []string{"tls", "pin", filepath.Join(dir, "nope.pem")}, 1, "", "does not exist"},
		{"pin without a file", []string{"tls", "pin"}, 2, "", "arg"},
		{"dev again", []string{"tls", "dev", "--dir", dir}, 1, "", "refusing to overwrite"},
		{"dev without a dir", []string{"tls", "dev"}, 2, "", "--dir is required"},
		{"dev with a bad host", []string{"tls", "dev", "--dir", t.TempDir(), "--host", "*.example.com"}, 2, "", "--host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := kanade(tc.args...)
			if code != tc.wantCode || !strings.Contains(out, tc.wantOut) || !strings.Contains(errOut, tc.wantErr) {
				t.Fatalf("kanade %s = %d\nstdout: %s\nstderr: %s\nwant %d, stdout with %q, stderr with %q",
					strings.Join(tc.args, " "), code, out, errOut, tc.wantCode, tc.wantOut, tc.wantErr)
			}
		})
	}
}
