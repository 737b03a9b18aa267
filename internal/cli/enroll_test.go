//go:build !windows

package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-project/kanade/internal/agent"
	"github.com/kanade-project/kanade/internal/agentconfig"
	"github.com/kanade-project/kanade/internal/logtest"
	"github.com/kanade-project/kanade/internal/natsauth"
	"github.com/kanade-project/kanade/internal/server"
	"github.com/kanade-project/kanade/internal/serverconfig"
)

// nkeysServer starts a real server with [nats] auth = "nkeys" (and the dev
// agent dev-pc when dev), the CLI pointed at its API. It returns the broker
// URL and the data dir.
func nkeysServer(t *testing.T, dev bool) (natsURL, dataDir string, banner *logtest.Buffer) {
	t.Helper()
	t.Setenv(serverconfig.EnvAPIToken, apiTestToken)
	t.Setenv(serverconfig.EnvNATSToken, "")
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", home)
	cfg, err := serverconfig.Parse([]byte("[nats]\nauth = \"nkeys\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	dataDir = t.TempDir()
	banner = &logtest.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan [2]string, 1)
	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctx, server.Options{Config: cfg, DataDir: dataDir, NATSListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0",
			Dev: dev, AgentID: "dev-pc", Out: banner, Logger: slog.New(slog.DiscardHandler), Ready: func(n, h string) { ready <- [2]string{n, h} }})
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
		return u[0], dataDir, banner
	case err := <-done:
		cancel()
		t.Fatalf("server did not start: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("server not ready")
	}
	return "", "", nil
}

// startEnrolledAgent runs a real agent whose agent.toml names seedFile as
// its nkey_file, the way an endpoint is set up after `kanade agent enroll`.
func startEnrolledAgent(t *testing.T, pc, natsURL, seedFile string) *logtest.Buffer {
	t.Helper()
	cfg, err := agentconfig.Parse([]byte(fmt.Sprintf("[agent]\nid = %q\nnats_urls = [%q]\nnkey_file = %q\n", pc, natsURL, seedFile)))
	if err != nil {
		t.Fatal(err)
	}
	seed, _, err := cfg.NKeySeed()
	if err != nil {
		t.Fatal(err)
	}
	opt, _, err := natsauth.Option(seed)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logtest.Buffer{}
	a, err := agent.New(agent.Config{ID: pc, NATSURLs: cfg.Agent.NATSURLs, DataDir: t.TempDir(), Version: "test",
		Logger: slog.New(slog.NewTextHandler(logs, nil)), NATSOptions: []nats.Option{opt}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent %s: %v", pc, err)
		}
		if t.Failed() {
			t.Logf("agent %s log:\n%s", pc, logs.String())
		}
	})
	return logs
}

// eventuallyCLI runs the CLI until it exits 0 (the agent may still be
// connecting), failing after 30 s with the last output.
func eventuallyCLI(t *testing.T, args ...string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, out, errOut := kanadeIn("", args...)
		if code == 0 {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("kanade %v: exit %d\n%s%s", args, code, out, errOut)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAgentEnrollAndRevoke drives per-agent credentials end to end through
// the real server, its API and the CLI: enrol two PCs, run commands on
// both with the operator key, revoke one — it is disconnected and refused,
// the other stays connected and keeps working — and every change is in
// the audit log.
func TestAgentEnrollAndRevoke(t *testing.T) {
	natsURL, dataDir, banner := nkeysServer(t, false)
	operatorSeed := filepath.Join(server.NKeysDir(dataDir), server.OperatorSeedFile)
	if !strings.Contains(banner.String(), "KANADE_NATS_NKEY="+operatorSeed) {
		t.Errorf("the banner does not say how the CLI authenticates:\n%s", banner.String())
	}
	if st, err := os.Stat(operatorSeed); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("operator seed %s: %v (mode %v), want mode 0600", operatorSeed, err, st.Mode().Perm())
	}
	dir := t.TempDir()
	seeds := map[string]string{}
	for _, pc := range []string{"pc-a", "pc-b"} {
		seeds[pc] = filepath.Join(dir, pc+".seed")
		code, out, errOut := kanadeIn("", "agent", "enroll", pc, "--out", seeds[pc])
		if code != 0 {
			t.Fatalf("enroll %s: exit %d\n%s%s", pc, code, out, errOut)
		}
		seed, err := natsauth.ReadSeedFile(seeds[pc]) // also checks mode 0600
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out+errOut, string(seed)) {
			t.Fatalf("enroll printed the seed:\n%s", out)
		}
		pub, _ := natsauth.ParseSeed(seed)
		for _, want := range []string{pc + " enrolled", pub, "mode 0600", "the broker accepts this key now", "nkey_file", "NatsNkeySeed"} {
			if !strings.Contains(out, want) {
				t.Errorf("enroll output lacks %q:\n%s", want, out)
			}
		}
	}

	t.Run("usage errors", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"agent", "enroll", "pc-c"}, "--out FILE is required"},
			{[]string{"agent", "enroll", "pc-a", "--out", seeds["pc-a"]}, "exists: choose another file, or pass --force"},
			{[]string{"agent", "enroll", "pc.c", "--out", filepath.Join(dir, "x")}, "not usable in a NATS subject"},
			{[]string{"agent", "enroll", "pc-c", "--out", filepath.Join(dir, "missing", "x")}, "does not exist"},
		} {
			code, out, errOut := kanadeIn("", tc.args...)
			if code != 2 || !strings.Contains(errOut, tc.want) {
				t.Errorf("kanade %v: exit %d, %q%q; want exit 2 saying %q", tc.args, code, out, errOut, tc.want)
			}
		}
		code, _, errOut := kanadeIn("", "agent", "revoke", "pc-never")
		if code != 1 || !strings.Contains(errOut, "not_enrolled") {
			t.Errorf("revoke of an unknown PC: exit %d %q", code, errOut)
		}
	})

	code, out, errOut := kanadeIn("", "agent", "credentials", "-o", "json")
	var list struct {
		Agents []natsauth.Enrollment `json:"agents"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list.Agents) != 2 || list.Agents[0].PC != "pc-a" || list.Agents[1].PC != "pc-b" {
		t.Fatalf("credentials: exit %d %q %q", code, out, errOut)
	}

	logs := map[string]*logtest.Buffer{}
	for pc, f := range seeds {
		logs[pc] = startEnrolledAgent(t, pc, natsURL, f)
	}
	cli := func(args ...string) []string {
		return append([]string{"--server", natsURL, "--nkey", operatorSeed}, args...)
	}
	for pc := range seeds {
		if out := eventuallyCLI(t, cli("run", pc, "--", "echo", "hi", pc)...); !strings.Contains(out, "hi "+pc) {
			t.Fatalf("run on %s: %q", pc, out)
		}
	}
	// Without the operator key the broker lets the CLI in no more.
	if code, _, errOut := kanadeIn("", "--server", natsURL, "ping", "pc-a"); code == 0 || !strings.Contains(strings.ToLower(errOut), "authorization violation") {
		t.Errorf("CLI without a key: exit %d %q", code, errOut)
	}

	code, out, errOut = kanadeIn("", "agent", "revoke", "pc-a")
	if code != 0 || !strings.Contains(out, "pc-a revoked") || !strings.Contains(out, "closed its connection") {
		t.Fatalf("revoke: exit %d\n%s%s", code, out, errOut)
	}
	// The revoked agent is cut off and every reconnect is refused.
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(strings.ToLower(logs["pc-a"].String()), "authorization violation") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("pc-a was not refused twice after revoke:\n%s", logs["pc-a"].String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, _, errOut := kanadeIn("", cli("ping", "pc-a")...); code == 0 {
		t.Errorf("pc-a answers a ping after revoke: %q", errOut)
	}
	// The other agent never noticed.
	if out := eventuallyCLI(t, cli("run", "pc-b", "--", "echo", "still", "here")...); !strings.Contains(out, "still here") {
		t.Fatalf("run on pc-b after revoking pc-a: %q", out)
	}
	if strings.Contains(logs["pc-b"].String(), "disconnected from broker") {
		t.Errorf("pc-b was disconnected by pc-a's revocation:\n%s", logs["pc-b"].String())
	}

	// Re-enrolling issues a new key; the old seed stays refused.
	code, out, errOut = kanadeIn("", "agent", "enroll", "pc-a", "--out", seeds["pc-a"], "--force")
	if code != 0 || !strings.Contains(out, "pc-a enrolled") {
		t.Fatalf("re-enroll: exit %d\n%s%s", code, out, errOut)
	}

	// Every change is audited, none with a seed.
	var audit struct {
		Events []struct {
			Action, Target string
			Payload        json.RawMessage
		} `json:"audit"`
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		audit.Events = nil
		if err := getAPI("/api/audit?limit=50", &audit); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range audit.Events {
			if strings.HasSuffix(e.Action, "_agent") {
				got = append(got, e.Action+" "+e.Target)
			}
		}
		if strings.Join(got, ",") == "enroll_agent pc-a,revoke_agent pc-a,enroll_agent pc-b,enroll_agent pc-a" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit = %v", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func getAPI(path string, out any) error {
	req, err := http.NewRequest("GET", os.Getenv("KANADE_API_URL")+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+apiTestToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// TestQuickStartWithNKeys: `kanade server --dev` with auth = "nkeys"
// enrols its own agent, and the CLI with the operator key the banner names
// runs a command on it.
func TestQuickStartWithNKeys(t *testing.T) {
	natsURL, dataDir, _ := nkeysServer(t, true)
	t.Setenv(natsauth.EnvNKey, filepath.Join(server.NKeysDir(dataDir), server.OperatorSeedFile))
	if out := eventuallyCLI(t, "--server", natsURL, "run", "dev-pc", "--", "echo", "hi"); !strings.Contains(out, "hi") {
		t.Fatalf("run: %q", out)
	}
	code, out, errOut := kanadeIn("", "agent", "credentials")
	if code != 0 || !strings.Contains(out, "dev-pc") {
		t.Fatalf("credentials: exit %d %q %q", code, out, errOut)
	}
	code, out, errOut = kanadeIn("", "nats", "config")
	if code != 0 || !strings.Contains(out, `"_INBOX.dev-pc.>"`) || !strings.Contains(out, "# operator") {
		t.Fatalf("nats config: exit %d %q %q", code, out, errOut)
	}
}

// TestEnrollNeedsNKeysMode: against a server with the shared token, the
// enrolment commands say what to change.
func TestEnrollNeedsNKeysMode(t *testing.T) {
	apiServer(t)
	for _, args := range [][]string{
		{"agent", "enroll", "pc-a", "--out", filepath.Join(t.TempDir(), "pc-a.seed")},
		{"agent", "revoke", "pc-a"},
		{"agent", "credentials"},
		{"nats", "config"},
	} {
		code, out, errOut := kanadeIn("", args...)
		if code != 1 || !strings.Contains(errOut, `auth = "nkeys"`) || !strings.Contains(errOut, "server.toml") {
			t.Errorf("kanade %v: exit %d %q %q; want exit 1 saying to set auth = \"nkeys\"", args, code, out, errOut)
		}
	}
}

// TestNATSConfigFromTheDataDir: before the server's first start on an
// external cluster, `kanade nats config --data-dir` creates the server's
// keys where it will look for them and prints the block granting them;
// the server then starts with the same keys.
func TestNATSConfigFromTheDataDir(t *testing.T) {
	dataDir := t.TempDir()
	code, first, errOut := kanadeIn("", "nats", "config", "--data-dir", dataDir)
	if code != 0 || !strings.Contains(first, "# backend") || !strings.Contains(first, "# operator") || !strings.Contains(first, "authorization {") {
		t.Fatalf("exit %d\n%s%s", code, first, errOut)
	}
	seed, err := natsauth.ReadSeedFile(filepath.Join(server.NKeysDir(dataDir), server.OperatorSeedFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(first+errOut, string(seed)) {
		t.Fatal("a seed was printed")
	}
	if pub, _ := natsauth.ParseSeed(seed); !strings.Contains(first, pub) {
		t.Fatalf("the operator key %s is not in the block", pub)
	}
	if code, again, _ := kanadeIn("", "nats", "config", "--data-dir", dataDir); code != 0 || again != first {
		t.Fatalf("a second run changed the keys:\n%s", again)
	}
}
