package service

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCommandLifecycleExitCodes drives the command line against the fake
// systemd: install's --binary and --config reach the unit; status prints
// the state and exits 0 running, 3 stopped, 4 not installed; start of a
// missing service exits 1 and says how to install it.
func TestCommandLifecycleExitCodes(t *testing.T) {
	f := newFakeSystemd(t)
	m := f.manager(nil)
	bin := filepath.Join(t.TempDir(), "kanade-agent")
	if err := os.WriteFile(bin, []byte("agent"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := writeTestConfig(t, t.TempDir())

	step := func(wantCode int, wantOut string, args ...string) {
		t.Helper()
		code, out, errOut := runCommand(m, args...)
		if code != wantCode || !strings.Contains(out+errOut, wantOut) {
			t.Errorf("service %s: exit %d, stdout %q, stderr %q; want exit %d and %q", strings.Join(args, " "), code, out, errOut, wantCode, wantOut)
		}
	}
	step(ExitStatusNotInstalled, "not installed", "status")
	step(ExitError, "kanade-agent service install", "start")
	step(ExitOK, "enabled and started", "install", "--binary", bin, "--config", cfg)
	if b, err := os.ReadFile(f.unit); err != nil || !strings.Contains(string(b), "\nExecStart="+bin+" --config "+cfg+"\n") {
		t.Errorf("unit after install --binary --config: %v\n%s", err, b)
	}
	step(ExitOK, "running (pid 4242)", "status")
	step(ExitOK, "stopped", "stop")
	step(ExitStatusNotRunning, "stopped", "status")
	step(ExitOK, "running", "start")
	step(ExitOK, "removed", "uninstall")
	step(ExitStatusNotInstalled, "not installed", "status")

	step(ExitOK, "enabled and started", "install", "--copy", "--binary", bin)
	if b, err := os.ReadFile(f.unit); err != nil || !strings.Contains(string(b), "\nExecStart="+m.installPath+" --config /etc/kanade/agent.toml\n") {
		t.Errorf("unit after install --copy: %v\n%s", err, b)
	}
}
