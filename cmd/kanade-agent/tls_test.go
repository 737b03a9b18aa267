//go:build !windows

package main_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/devca"
	"github.com/kanade-project/kanade/internal/fleetclient"
	"github.com/kanade-project/kanade/internal/logtest"
	"github.com/kanade-project/kanade/internal/tlsconf"
	"github.com/kanade-project/kanade/internal/wire"
)

// writeTLSConfig writes an agent.toml whose [agent] table ends with extra.
func writeTLSConfig(t *testing.T, id, url, extra string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "agent.toml")
	cfg := fmt.Sprintf("[agent]\nid = %q\nnats_urls = [%q]\ndata_dir = '%s'\n%s\n[log]\nlevel = \"debug\"\n", id, url, t.TempDir(), extra)
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func pinOf(t *testing.T, certFile string) string {
	t.Helper()
	certs, err := tlsconf.LoadCertificates(certFile)
	if err != nil {
		t.Fatal(err)
	}
	return tlsconf.Pin(certs[0])
}

// TestBinaryAgentTLS: the agent binary, configured by agent.toml, against a
// broker that speaks TLS only. With the broker's CA (and a matching pin)
// it connects and runs a command; with another CA or another pin it never
// connects and its log says why.
func TestBinaryAgentTLS(t *testing.T) {
	bin := buildAgent(t, runtime.GOOS)
	good, err := devca.Generate(t.TempDir(), []string{"localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := devca.Generate(t.TempDir(), []string{"localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	srvTLS, err := tlsconf.Server(good.Cert, good.Key)
	if err != nil {
		t.Fatal(err)
	}
	cliTLS, err := tlsconf.Client(tlsconf.ClientOptions{CAFile: good.CA})
	if err != nil {
		t.Fatal(err)
	}
	srv := brokertest.StartTLS(t, srvTLS, cliTLS)
	c, err := fleetclient.New(srv.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	pin, otherPin := pinOf(t, good.Cert), pinOf(t, other.Cert)
	_, port, _ := net.SplitHostPort(srv.Listen())

	for i, tc := range []struct {
		name string
		url  string
		toml string
		// refusal is the log text of a refused handshake; "" connects.
		refusal string
	}{
		{"the broker's CA", srv.URL(), fmt.Sprintf("nats_ca_file = '%s'", good.CA), ""},
		{"tls:// URL by host name", "tls://localhost:" + port, fmt.Sprintf("nats_ca_file = '%s'", good.CA), ""},
		{"CA and one of the pins", srv.URL(), fmt.Sprintf("nats_ca_file = '%s'\nnats_pin_sha256 = [%q, %q]", good.CA, otherPin, strings.ToUpper(pin)), ""},
		{"another CA", srv.URL(), fmt.Sprintf("nats_ca_file = '%s'", other.CA), "x509: certificate signed by unknown authority"},
		{"the CA but another pin", srv.URL(), fmt.Sprintf("nats_ca_file = '%s'\nnats_pin_sha256 = [%q]", good.CA, otherPin), "not one of the 1 configured pins"},
		{"no CA: the system's roots", srv.URL(), "", "x509: certificate signed by unknown authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("tls-pc-%d", i)
			logs := &logtest.Buffer{}
			cmd := exec.Command(bin, "--config", writeTLSConfig(t, id, tc.url, tc.toml))
			cmd.Stderr = logs
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			t.Cleanup(func() {
				// Killed: a graceful stop is tested elsewhere, and one
				// that never connected waits for a flush that cannot
				// happen.
				_ = cmd.Process.Kill()
				<-exited
				if t.Failed() {
					t.Logf("agent log:\n%s", logs.String())
				}
			})

			if tc.refusal == "" {
				waitPing(t, c, id, 30*time.Second)
				r := runOne(t, c, id, wire.Command{Script: "echo over tls"}, 30*time.Second)
				if r.Stdout != "over tls\n" || r.ExitCode != 0 {
					t.Fatalf("result = %+v", r)
				}
				return
			}
			deadline := time.Now().Add(30 * time.Second)
			for !strings.Contains(logs.String(), tc.refusal) {
				select {
				case err := <-exited:
					t.Fatalf("agent exited (%v) instead of retrying", err)
				default:
				}
				if time.Now().After(deadline) {
					t.Fatalf("the agent log never said %q", tc.refusal)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if !strings.Contains(logs.String(), "cannot connect to the broker") {
				t.Error("the refusal is not logged as a connection failure")
			}
			if strings.Contains(logs.String(), "connected to broker") {
				t.Fatal("the agent connected")
			}
		})
	}
}

// TestBinaryAgentTLSConfigErrors: bad TLS settings stop the agent at
// start with exit 2 and a message naming the key and the fix.
func TestBinaryAgentTLSConfigErrors(t *testing.T) {
	bin := buildAgent(t, runtime.GOOS)
	good, err := devca.Generate(t.TempDir(), []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	loose := filepath.Join(dir, "loose-ca.pem")
	b, err := os.ReadFile(good.CA)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(loose, b, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o666); err != nil {
		t.Fatal(err)
	}
	keyed := filepath.Join(dir, "keyed-ca.pem")
	kb, err := os.ReadFile(good.CAKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyed, append(b, kb...), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		toml string
		want []string
	}{
		{"missing CA file", fmt.Sprintf("nats_ca_file = '%s'", filepath.Join(dir, "nope.pem")), []string{"nats_ca_file", "nope.pem does not exist", "PEM"}},
		{"CA file writable by others", fmt.Sprintf("nats_ca_file = '%s'", loose), []string{"nats_ca_file", "writable by group or others", "chmod go-w"}},
		{"CA file with a private key", fmt.Sprintf("nats_ca_file = '%s'", keyed), []string{"nats_ca_file", "holds a private key"}},
		{"malformed pin", `nats_pin_sha256 = ["12ab"]`, []string{"nats_pin_sha256 entry 1", "64 hex digits", "kanade tls pin"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, "--config", writeTLSConfig(t, "cfg-pc", "nats://127.0.0.1:1", tc.toml))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errorsAs(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("exit = %v, want 2\n%s", err, stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
		})
	}
}
