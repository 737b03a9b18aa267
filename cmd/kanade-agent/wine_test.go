//go:build linux

package main_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/fleetclient"
	"github.com/kanade-project/kanade/internal/winetest"
	"github.com/kanade-project/kanade/internal/wire"
)

// winePath turns a Linux path into the Z: drive path Wine maps it to.
func winePath(p string) string { return `Z:` + strings.ReplaceAll(p, "/", `\`) }

// TestWindowsAgentUnderWine runs the Windows build of the agent under Wine
// against a Linux-side embedded broker: it must answer ping and run a cmd
// command, returning its stdout in an ExecResult.
func TestWindowsAgentUnderWine(t *testing.T) {
	winetest.Prefix(t) // skips with an install hint when Wine is absent
	exe := buildAgent(t, "windows")
	srv := brokertest.Start(t)

	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.toml")
	body := fmt.Sprintf("[agent]\nid = \"wine-pc\"\nnats_urls = [%q]\ndata_dir = '%s'\n\n[log]\nlevel = \"debug\"\n",
		srv.URL(), winePath(filepath.Join(dir, "data")))
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := winetest.Command(t, exe, "--config", winePath(cfg))
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	})

	c, err := fleetclient.New(srv.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	// Wine's first start of a prefix can take a while.
	hb := waitPing(t, c, "wine-pc", 90*time.Second)
	if hb.OSFamily != "windows" || hb.AgentVersion != testVersion {
		t.Fatalf("heartbeat = %+v, want os windows and version %s", hb, testVersion)
	}
	if hb.AgentRSSBytes == 0 {
		t.Errorf("heartbeat has no RSS figure: %+v", hb)
	}
	r := runOne(t, c, "wine-pc", wire.Command{Shell: wire.ShellCmd, Script: "echo hi from windows & exit /b 4"}, 60*time.Second)
	if strings.TrimSpace(r.Stdout) != "hi from windows" || r.ExitCode != 4 || r.PCID != "wine-pc" {
		t.Fatalf("result = %+v, want stdout %q and exit 4", r, "hi from windows")
	}
}
