package cli_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/agent"
	"github.com/kanade-project/kanade/internal/agentconfig"
	"github.com/kanade-project/kanade/internal/cli"
	"github.com/kanade-project/kanade/internal/server"
	"github.com/kanade-project/kanade/internal/serverconfig"
	"github.com/kanade-project/kanade/internal/signing"
)

// generateCommandKey runs `kanade command-key generate` and returns the
// directory with command.key and command.pub.
func generateCommandKey(t *testing.T) (dir, out string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "keys")
	code, out, errOut := kanadeIn("", "command-key", "generate", "--dir", dir)
	if code != 0 {
		t.Fatalf("command-key generate = %d %q %q", code, out, errOut)
	}
	return dir, out
}

func TestCommandKeyGenerate(t *testing.T) {
	dir, out := generateCommandKey(t)
	keyPath, pubPath := filepath.Join(dir, "command.key"), filepath.Join(dir, "command.pub")
	ring, err := signing.LoadRing(pubPath, signing.PurposeCommand)
	if err != nil || ring.Len() != 1 {
		t.Fatalf("command.pub is not a one-key command ring: %v", err)
	}
	if st, err := os.Stat(keyPath); err != nil || (runtime.GOOS != "windows" && st.Mode().Perm() != 0o600) {
		t.Fatalf("command.key: %v, mode %v; want 0600", err, st.Mode().Perm())
	}
	for _, want := range []string{ring.IDs()[0], keyPath, pubPath, "--command-key", cli.EnvCommandKey, "command_key_file",
		"command_keys_file", "require_signed_commands = true", "CommandKeys", "RequireSignedCommands", `HKLM\SOFTWARE\Kanade\Agent`} {
		if !strings.Contains(out, want) {
			t.Errorf("generate output lacks %q:\n%s", want, out)
		}
	}
	priv, err := signing.LoadPrivate(keyPath, signing.PurposeCommand)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{base64.StdEncoding.EncodeToString(priv.Seed()), base64.StdEncoding.EncodeToString(priv), hex.EncodeToString(priv.Seed()), "private-key ed25519"} {
		if strings.Contains(out, secret) {
			t.Fatalf("private key material %q printed", secret)
		}
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"second run refuses", []string{"command-key", "generate", "--dir", dir}, 1, "command.key already exists; refusing to overwrite"},
		{"missing --dir", []string{"command-key", "generate"}, 2, "--dir is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := os.ReadFile(keyPath)
			code, _, errOut := kanadeIn("", tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Fatalf("= %d %q, want %d and %q", code, errOut, tc.code, tc.want)
			}
			if after, _ := os.ReadFile(keyPath); !bytes.Equal(before, after) {
				t.Fatal("the private key changed")
			}
		})
	}
}

// signingServer starts a real server whose server.toml names the command
// key, and an agent that requires commands signed by it.
func signingServer(t *testing.T, keyDir, pc string) (natsURL, httpURL string) {
	t.Helper()
	t.Setenv(serverconfig.EnvAPIToken, apiTestToken)
	t.Setenv("HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	cfg, err := serverconfig.Parse([]byte(fmt.Sprintf("[security]\ncommand_key_file = %q\n", filepath.Join(keyDir, "command.key"))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan [2]string, 1)
	done := make(chan error, 1)
	dataDir := t.TempDir()
	go func() {
		done <- server.Run(ctx, server.Options{Config: cfg, DataDir: dataDir, NATSListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0",
			Logger: slog.New(slog.DiscardHandler), Ready: func(n, h string) { ready <- [2]string{n, h} }})
	}()
	select {
	case u := <-ready:
		natsURL, httpURL = u[0], u[1]
	case err := <-done:
		cancel()
		t.Fatalf("server did not start: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("server not ready")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	t.Setenv("KANADE_API_URL", httpURL)
	t.Setenv("KANADE_API_TOKEN", apiTestToken)

	// The agent's settings go through agent.toml, as on an endpoint.
	ring := filepath.Join(t.TempDir(), "command-keys.pub")
	pub, err := os.ReadFile(filepath.Join(keyDir, "command.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ring, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	acfg, err := agentconfig.Parse([]byte(fmt.Sprintf("[agent]\nid = %q\nnats_urls = [%q]\n[security]\ncommand_keys_file = %q\nrequire_signed_commands = true\n", pc, natsURL, ring)))
	if err != nil {
		t.Fatal(err)
	}
	require, keys, err := acfg.CommandSigning()
	if err != nil || keys == nil || !require {
		t.Fatalf("agent signing settings: %v %v %v", require, keys, err)
	}
	a, err := agent.New(agent.Config{ID: pc, NATSURLs: []string{natsURL}, DataDir: t.TempDir(), Version: "test",
		Logger: slog.New(slog.DiscardHandler), CommandSigning: &agent.CommandSigning{Require: require, Keys: keys}})
	if err != nil {
		t.Fatal(err)
	}
	actx, stop := context.WithCancel(context.Background())
	adone := make(chan error, 1)
	go func() { adone <- a.Run(actx) }()
	t.Cleanup(func() { stop(); <-adone })
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, out, _ := kanadeIn("", "--server", natsURL, "ping", pc, "--timeout", "500ms")
		if code == 0 && strings.Contains(out, pc+" answered") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent %s never answered: %d %s", pc, code, out)
		}
	}
	return natsURL, httpURL
}

// TestSignedCommandsEndToEnd: the operator's CLI with --command-key (or
// KANADE_COMMAND_KEY), and the backend with [security] command_key_file
// for jobs and dashboard runs, get their commands run by an agent that
// requires signatures; an unsigned CLI command is refused with 123.
func TestSignedCommandsEndToEnd(t *testing.T) {
	keyDir, _ := generateCommandKey(t)
	keyPath := filepath.Join(keyDir, "command.key")
	const pc = "signed-pc"
	natsURL, httpURL := signingServer(t, keyDir, pc)
	loose := filepath.Join(t.TempDir(), "loose.key")
	b, _ := os.ReadFile(keyPath)
	if err := os.WriteFile(loose, b, 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name    string
		env     string
		args    []string
		code    int
		stdout  string
		stderr  string
		skipWin bool
	}{
		{name: "unsigned is refused", args: []string{"run", pc, "--", "echo", "x"}, code: 123,
			stderr: "this endpoint requires signed commands: sign with `kanade --command-key FILE`"},
		{name: "--command-key", args: []string{"--command-key", keyPath, "run", pc, "--", "echo", "flag-signed"}, stdout: "flag-signed\n"},
		{name: "KANADE_COMMAND_KEY", env: keyPath, args: []string{"run", pc, "--", "echo", "env-signed"}, stdout: "env-signed\n"},
		{name: "a broadcast", env: keyPath, args: []string{"run", "--all", "--survey", "300ms", "--", "echo", "everyone"}, stdout: "1 answered (1 succeeded, 0 failed)"},
		{name: "a loose key file publishes nothing", args: []string{"--command-key", loose, "run", pc, "--", "echo", "x"}, code: 2,
			stderr: "--command-key: command key file " + loose + " is accessible by group or others", skipWin: true},
		{name: "a public key is not a signing key", env: filepath.Join(keyDir, "command.pub"), args: []string{"run", pc, "--", "echo", "x"}, code: 2,
			stderr: cli.EnvCommandKey + ": command key file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.skipWin && runtime.GOOS == "windows" {
				t.Skip("no mode bits on Windows")
			}
			t.Setenv(cli.EnvCommandKey, tc.env)
			code, out, errOut := kanadeIn("", append([]string{"--server", natsURL}, tc.args...)...)
			if code != tc.code || !strings.Contains(out, tc.stdout) || !strings.Contains(errOut, tc.stderr) {
				t.Fatalf("kanade %s = %d\nstdout: %s\nstderr: %s\nwant %d, %q, %q", strings.Join(tc.args, " "), code, out, errOut, tc.code, tc.stdout, tc.stderr)
			}
		})
	}

	t.Run("backend jobs", func(t *testing.T) {
		t.Setenv(cli.EnvCommandKey, "")
		m := writeFile(t, "m.yaml", "id: signed-job\nversion: \"1\"\nexecute:\n  shell: sh\n  script: echo job-signed-by-backend\n")
		if code, out, errOut := kanadeIn("", "job", "create", "-f", m); code != 0 {
			t.Fatalf("create: %d %q %q", code, out, errOut)
		}
		code, out, errOut := kanadeIn("", "exec", "signed-job", "--pcs", pc, "--wait", "60s")
		if code != 0 || !strings.Contains(out, "1 succeeded") {
			t.Fatalf("exec: %d %q %q", code, out, errOut)
		}
	})

	t.Run("backend dashboard run", func(t *testing.T) {
		body := `{"target":{"pc":"` + pc + `"},"script":"echo run-signed-by-backend"}`
		req, _ := http.NewRequest("POST", httpURL+"/api/run", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+apiTestToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var ids struct {
			ExecID string `json:"exec_id"`
		}
		err = json.NewDecoder(resp.Body).Decode(&ids)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST /api/run = %d, %v", resp.StatusCode, err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, out, _ := kanadeIn("", "results", ids.ExecID)
			if code == 0 && strings.Contains(out, "run-signed-by-backend") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no signed run result: %d %q", code, out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}
