package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/agent"
	"github.com/kanade-project/kanade/internal/cli"
	"github.com/kanade-project/kanade/internal/server"
	"github.com/kanade-project/kanade/internal/serverconfig"
)

const apiTestToken = "cli-api-test-token-0123456789"

// apiServer starts a real server with a temp data dir on random ports and
// points the CLI at it through KANADE_API_URL / KANADE_API_TOKEN.
func apiServer(t *testing.T) (natsURL, httpURL string) {
	t.Helper()
	t.Setenv(serverconfig.EnvAPIToken, apiTestToken)
	cfg := t.TempDir()
	t.Setenv("HOME", cfg)
	t.Setenv("XDG_CONFIG_HOME", cfg)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan [2]string, 1)
	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctx, server.Options{DataDir: t.TempDir(), NATSListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0",
			Logger: slog.New(slog.DiscardHandler), Ready: func(n, h string) { ready <- [2]string{n, h} }})
	}()
	select {
	case u := <-ready:
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("server: %v", err)
			}
		})
		t.Setenv("KANADE_API_URL", u[1])
		t.Setenv("KANADE_API_TOKEN", apiTestToken)
		return u[0], u[1]
	case err := <-done:
		cancel()
		t.Fatalf("server did not start: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("server not ready")
	}
	return "", ""
}

func kanadeIn(stdin string, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := cli.Main(args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoginStoresCredentials(t *testing.T) {
	_, httpURL := apiServer(t)
	t.Setenv("KANADE_API_TOKEN", "")
	t.Setenv("KANADE_API_URL", "")

	code, out, errOut := kanadeIn("wrong-token\n", "login", "--api", httpURL)
	if code != 1 || !strings.Contains(errOut, "kanade login") || strings.Contains(out+errOut, "wrong-token") {
		t.Fatalf("bad token: %d %q %q", code, out, errOut)
	}
	code, out, errOut = kanadeIn(apiTestToken+"\n", "login", "--api", httpURL)
	if code != 0 {
		t.Fatalf("login: %d %q %q", code, out, errOut)
	}
	if strings.Contains(out+errOut, apiTestToken) {
		t.Fatalf("the token was printed: %q %q", out, errOut)
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "kanade", "credentials.json")
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("credentials mode %v, want 0600", st.Mode().Perm())
	}
	if dst, _ := os.Stat(filepath.Dir(p)); dst.Mode().Perm() != 0o700 {
		t.Fatalf("credentials dir mode %v, want 0700", dst.Mode().Perm())
	}
	var c struct{ API, Token string }
	b, _ := os.ReadFile(p)
	if err := json.Unmarshal(b, &c); err != nil || c.API != httpURL || c.Token != apiTestToken {
		t.Fatalf("credentials %s: %v", b, err)
	}
	// The stored login is used with no env at all.
	if code, out, errOut := kanadeIn("", "job", "list"); code != 0 || !strings.Contains(out, "ID") {
		t.Fatalf("job list with stored login: %d %q %q", code, out, errOut)
	}
	if code, _, _ := kanadeIn("", "logout"); code != 0 {
		t.Fatal("logout failed")
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("credentials still there: %v", err)
	}
	code, _, errOut = kanadeIn("", "job", "list", "--api", httpURL)
	if code != 1 || !strings.Contains(errOut, "unauthorized") || !strings.Contains(errOut, "kanade login") {
		t.Fatalf("after logout: %d %q", code, errOut)
	}
}

func TestJobCommands(t *testing.T) {
	apiServer(t)
	bad := writeFile(t, "bad.yaml", "id: hello\nversion: \"1\"\nexecute:\n  shell: sh\n  scirpt: echo hi\n")
	code, _, errOut := kanadeIn("", "job", "create", "-f", bad)
	if code != 2 || !strings.Contains(errOut, "invalid_manifest") || !strings.Contains(errOut, "execute.scirpt") {
		t.Fatalf("unknown key: %d %q", code, errOut)
	}
	good := writeFile(t, "good.yaml", "id: hello\nversion: \"1\"\ndescription: says hello\nexecute:\n  shell: sh\n  script: echo hello-from-cli\n")
	code, out, errOut := kanadeIn("", "job", "create", "-f", good)
	if code != 0 || !strings.Contains(out, "job hello version 1 stored at revision") {
		t.Fatalf("create: %d %q %q", code, out, errOut)
	}
	code, out, _ = kanadeIn("", "job", "list")
	if code != 0 || !strings.Contains(out, "hello") || !strings.Contains(out, "says hello") {
		t.Fatalf("list: %d %q", code, out)
	}
	code, out, _ = kanadeIn("", "job", "show", "hello")
	if code != 0 || !strings.Contains(out, "echo hello-from-cli") {
		t.Fatalf("show: %d %q", code, out)
	}
	if code, _, errOut := kanadeIn("", "job", "delete", "hello", "--revision", "999"); code != 1 || !strings.Contains(errOut, "conflict") {
		t.Fatalf("delete at a wrong revision: %d %q", code, errOut)
	}
	if code, out, errOut := kanadeIn("", "job", "delete", "hello"); code != 0 || !strings.Contains(out, "deleted") {
		t.Fatalf("delete: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := kanadeIn("", "job", "show", "hello"); code != 1 || !strings.Contains(errOut, "unknown_job") {
		t.Fatalf("show after delete: %d %q", code, errOut)
	}
}

func TestExecAndResults(t *testing.T) {
	natsURL, _ := apiServer(t)
	a, err := agent.New(agent.Config{ID: "cli-pc1", NATSURLs: []string{natsURL}, DataDir: t.TempDir(), Version: "test", HeartbeatInterval: time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	m := writeFile(t, "m.yaml", "id: hello\nversion: \"1\"\nexecute:\n  shell: sh\n  script: echo hello-from-exec\n")
	if code, out, errOut := kanadeIn("", "job", "create", "-f", m); code != 0 {
		t.Fatalf("create: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := kanadeIn("", "exec", "hello"); code != 2 || !strings.Contains(errOut, "--all") {
		t.Fatalf("exec without a target: %d %q", code, errOut)
	}
	code, out, errOut := kanadeIn("", "exec", "hello", "--all", "--wait", "60s")
	if code != 0 || !strings.Contains(out, "1 succeeded") || !strings.Contains(errOut, "1 succeeded") {
		t.Fatalf("exec: %d %q %q", code, out, errOut)
	}
	f := strings.Fields(out)
	if len(f) < 2 || f[0] != "exec" {
		t.Fatalf("no exec id in %q", out)
	}
	t.Logf("exec stdout:\n%s\nstderr:\n%s", out, errOut)
	execID := f[1]
	code, out, errOut = kanadeIn("", "results", execID)
	if code != 0 || !strings.Contains(out, "cli-pc1") || !strings.Contains(out, "hello-from-exec") || !strings.Contains(out, "succeeded") {
		t.Fatalf("results: %d %q %q", code, out, errOut)
	}
	t.Logf("results:\n%s", out)
	code, out, _ = kanadeIn("", "results", execID, "-o", "json")
	var rs []struct {
		PCID   string `json:"pc_id"`
		Stdout string `json:"stdout"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &rs) != nil || len(rs) != 1 || rs[0].PCID != "cli-pc1" {
		t.Fatalf("results -o json: %d %q", code, out)
	}

	// A failing PC makes exec exit 1.
	broken := writeFile(t, "b.yaml", "id: broken\nversion: \"1\"\nexecute:\n  shell: sh\n  script: exit 3\n")
	if code, out, errOut := kanadeIn("", "job", "create", "-f", broken); code != 0 {
		t.Fatalf("create broken: %d %q %q", code, out, errOut)
	}
	code, out, errOut = kanadeIn("", "exec", "broken", "--pcs", "cli-pc1", "--wait", "60s")
	if code != 1 || !strings.Contains(out, "1 failed") || !strings.Contains(errOut, "failed") {
		t.Fatalf("failing exec: %d %q %q", code, out, errOut)
	}
}

func TestScheduleCommands(t *testing.T) {
	apiServer(t)
	m := writeFile(t, "m.yaml", "id: nightly-job\nversion: \"1\"\nexecute:\n  shell: sh\n  script: echo hi\n")
	if code, out, errOut := kanadeIn("", "job", "create", "-f", m); code != 0 {
		t.Fatalf("create job: %d %q %q", code, out, errOut)
	}
	bad := writeFile(t, "bad.yaml", "id: bad\njob: nightly-job\ncron: \"61 * * * *\"\ntarget: {all: true}\n")
	if code, _, errOut := kanadeIn("", "schedule", "create", "-f", bad); code != 2 || !strings.Contains(errOut, "invalid_schedule") {
		t.Fatalf("bad cron: %d %q", code, errOut)
	}
	good := writeFile(t, "s.yaml", "id: nightly\njob: nightly-job\ncron: \"0 3 * * *\"\ntarget: {all: true}\n")
	if code, out, errOut := kanadeIn("", "schedule", "create", "-f", good); code != 0 || !strings.Contains(out, "schedule nightly stored") {
		t.Fatalf("create: %d %q %q", code, out, errOut)
	}
	code, out, _ := kanadeIn("", "schedule", "list")
	if code != 0 || !strings.Contains(out, "nightly-job") || !strings.Contains(out, "true") || !strings.Contains(out, "0 3 * * *") {
		t.Fatalf("list: %d %q", code, out)
	}
	if code, out, errOut := kanadeIn("", "schedule", "disable", "nightly"); code != 0 || !strings.Contains(out, "disabled") {
		t.Fatalf("disable: %d %q %q", code, out, errOut)
	}
	code, out, _ = kanadeIn("", "schedule", "list")
	if code != 0 || !strings.Contains(out, "false") {
		t.Fatalf("list after disable: %d %q", code, out)
	}
	if code, out, errOut := kanadeIn("", "schedule", "enable", "nightly"); code != 0 || !strings.Contains(out, "enabled") {
		t.Fatalf("enable: %d %q %q", code, out, errOut)
	}
	if code, out, errOut := kanadeIn("", "schedule", "delete", "nightly"); code != 0 || !strings.Contains(out, "deleted") {
		t.Fatalf("delete: %d %q %q", code, out, errOut)
	}
	code, out, _ = kanadeIn("", "schedule", "list")
	if code != 0 || strings.Contains(out, "nightly-job") {
		t.Fatalf("list after delete: %d %q", code, out)
	}
}
