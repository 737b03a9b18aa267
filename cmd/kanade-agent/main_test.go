//go:build !windows

package main_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/fleetclient"
	"github.com/kanade-project/kanade/internal/wire"
)

const testVersion = "9.9.9-test"

// buildAgent compiles this command for goos/amd64 with the test version
// stamped in, once per test.
func buildAgent(t *testing.T, goos string) string {
	t.Helper()
	name := "kanade-agent"
	if goos == "windows" {
		name += ".exe"
	}
	out := filepath.Join(t.TempDir(), name)
	cmd := exec.Command("go", "build", "-o", out,
		"-ldflags", "-X github.com/kanade-project/kanade/internal/buildinfo.Version="+testVersion, ".")
	cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH=amd64", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build (%s): %v\n%s", goos, err, b)
	}
	return out
}

func writeConfig(t *testing.T, id, url, dataDir string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "agent.toml")
	cfg := fmt.Sprintf("[agent]\nid = %q\nnats_urls = [%q]\ndata_dir = '%s'\n\n[log]\nlevel = \"debug\"\n", id, url, dataDir)
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func waitPing(t *testing.T, c *fleetclient.Client, pc string, within time.Duration) wire.Heartbeat {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		hb, err := c.Ping(ctx, pc)
		cancel()
		if err == nil {
			return hb
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent %s never answered ping: %v", pc, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func runOne(t *testing.T, c *fleetclient.Client, pc string, cmd wire.Command, within time.Duration) wire.ExecResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	ex, err := c.Start(ctx, fleetclient.Target{PC: pc}, cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Close()
	select {
	case r := <-ex.Results:
		return r
	case <-ctx.Done():
		t.Fatalf("no result from %s within %s", pc, within)
	}
	return wire.ExecResult{}
}

func TestVersionFlag(t *testing.T) {
	bin := buildAgent(t, runtime.GOOS)
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(out)) != testVersion {
		t.Fatalf("--version printed %q, want %q", out, testVersion)
	}
}

func TestMissingOrInvalidConfigExplainsEveryOption(t *testing.T) {
	bin := buildAgent(t, runtime.GOOS)
	bad := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(bad, []byte("[agent]\nnats_url = \"nats://x:4222\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		env  string
		want string
	}{
		{"missing via flag", []string{"--config", filepath.Join(t.TempDir(), "nope.toml")}, "", "does not exist"},
		{"missing via env", nil, filepath.Join(t.TempDir(), "nope.toml"), "does not exist"},
		{"unknown key", []string{"--config", bad}, "", "nats_url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			cmd.Env = append(os.Environ(), "KANADE_AGENT_CONFIG="+tc.env)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errorsAs(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("exit = %v, want 2", err)
			}
			s := stderr.String()
			for _, want := range []string{tc.want, "--config", "KANADE_AGENT_CONFIG", "nats_urls", "data_dir", "[log]", "KANADE_NATS_TOKEN"} {
				if !strings.Contains(s, want) {
					t.Errorf("stderr lacks %q:\n%s", want, s)
				}
			}
		})
	}
}

func errorsAs(err error, target **exec.ExitError) bool {
	ee, ok := err.(*exec.ExitError)
	if ok {
		*target = ee
	}
	return ok
}

func TestBinaryAgentRunsCommandsAndStopsCleanly(t *testing.T) {
	bin := buildAgent(t, runtime.GOOS)
	srv := brokertest.Start(t)
	cfg := writeConfig(t, "bin-pc", srv.URL(), t.TempDir())
	var logs bytes.Buffer
	cmd := exec.Command(bin, "--config", cfg)
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	c, err := fleetclient.New(srv.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	hb := waitPing(t, c, "bin-pc", 20*time.Second)
	if hb.AgentVersion != testVersion || hb.MachineID == "" {
		t.Errorf("heartbeat = %+v, want version %s and a machine id", hb, testVersion)
	}
	r := runOne(t, c, "bin-pc", wire.Command{Script: "echo from binary"}, 30*time.Second)
	if r.Stdout != "from binary\n" || r.ExitCode != 0 {
		t.Fatalf("result = %+v", r)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("agent exited with %v after SIGTERM, want 0\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("agent did not stop within 15 s of SIGTERM")
	}
	if !strings.Contains(logs.String(), "agent stopping") {
		t.Errorf("log lacks the stop line:\n%s", logs.String())
	}
}
