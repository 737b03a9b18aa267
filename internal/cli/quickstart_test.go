package cli_test

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/cli"
	"github.com/kanade-project/kanade/internal/server"
)

// TestQuickStart is the README's promise: `kanade server --dev` brings up a
// broker and a local agent, and `kanade run <host> -- echo hi` prints hi.
func TestQuickStart(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var banner bytes.Buffer
	// Made here, not in the goroutine: cleanups run last-registered first,
	// and the directory must be removed after the server has stopped.
	dataDir := t.TempDir()
	go func() {
		done <- server.Run(ctx, server.Options{
			DataDir: dataDir, NATSListen: addr, HTTPListen: "127.0.0.1:0", Dev: true, AgentID: "quick-pc",
			Out: &banner, Ready: func(natsURL, _ string) { ready <- natsURL },
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	var url string
	select {
	case url = <-ready:
	case err := <-done:
		t.Fatalf("server stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("server not ready")
	}
	if !strings.Contains(banner.String(), "run quick-pc -- echo hi") {
		t.Errorf("banner does not show the next command:\n%s", banner.String())
	}

	kanade := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := cli.Main(append([]string{"--server", url}, args...), strings.NewReader(""), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	// The agent connects asynchronously: wait until it answers a ping.
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, out, _ := kanade("ping", "quick-pc", "--timeout", "500ms")
		if code == 0 && strings.Contains(out, "quick-pc answered") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ping never answered: %d %s", code, out)
		}
	}

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{"echo", []string{"run", "quick-pc", "--", "echo", "hi"}, 0, "hi\n", ""},
		{"exit code", []string{"run", "quick-pc", "--", "echo oops >&2; exit 7"}, 7, "", "oops"},
		{"broadcast", []string{"run", "--all", "--survey", "300ms", "--", "echo", "everyone"}, 0, "1 answered (1 succeeded, 0 failed)", ""},
		{"json", []string{"run", "quick-pc", "-o", "json", "--", "echo", "j"}, 0, `"stdout": "j\n"`, ""},
		{"no script", []string{"run", "quick-pc"}, 2, "", "no script"},
		{"two targets", []string{"run", "quick-pc", "--all", "--", "true"}, 2, "", "exactly one target"},
		{"bad shell", []string{"run", "quick-pc", "--shell", "fish", "--", "true"}, 2, "", "--shell"},
		{"absent pc", []string{"run", "nobody", "--wait", "300ms", "--", "true"}, 3, "", "no result from nobody"},
		{"jetstream status", []string{"jetstream", "status"}, 0, "agent_config", ""},
		{"jetstream setup", []string{"jetstream", "setup"}, 0, "unchanged", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := kanade(tc.args...)
			if code != tc.wantCode || !strings.Contains(out, tc.wantOut) || !strings.Contains(errOut, tc.wantErr) {
				t.Fatalf("kanade %s = %d\nstdout: %s\nstderr: %s\nwant %d, stdout with %q, stderr with %q",
					strings.Join(tc.args, " "), code, out, errOut, tc.wantCode, tc.wantOut, tc.wantErr)
			}
		})
	}
	code, out, _ := kanade("jetstream", "setup")
	if code != 0 || strings.Contains(out, "created") || strings.Contains(out, "updated") {
		t.Errorf("setup on a bootstrapped server changed something:\n%s", out)
	}
}
