package service

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/kanade-project/kanade/internal/winetest"
)

// TestCopyBinaryInstallsAndReplaces: --copy creates the install directory,
// writes an executable copy, replaces an older binary there without
// leaving a temp file, and copying a file onto itself changes nothing.
func TestCopyBinaryInstallsAndReplaces(t *testing.T) {
	dir := winetest.TempDir(t)
	src := filepath.Join(dir, "src", "kanade-agent.exe")
	if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, []byte("new binary"), 0o600); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "Program Files", "Kanade", "kanade-agent.exe")

	if err := copyBinary(src, dst); err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, "new binary")
	if err := os.WriteFile(src, []byte("newer binary"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := copyBinary(src, dst); err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, "newer binary")
	if _, err := os.Stat(dst + ".new"); !os.IsNotExist(err) {
		t.Errorf("%s.new left behind: %v", dst, err)
	}
	if err := copyBinary(dst, dst); err != nil {
		t.Fatalf("copy onto itself: %v", err)
	}
	checkFile(t, dst, "newer binary")
}

func checkFile(t *testing.T, path, content string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != content {
		t.Errorf("%s = %q, want %q", path, b, content)
	}
	if runtime.GOOS != "windows" {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s mode = %v, %v; want 0755", path, fi.Mode(), err)
		}
	}
}

// TestResolveBinary: the binary defaults to the running executable, a
// missing one is an error naming it, and with Copy the service gets the
// copy's path.
func TestResolveBinary(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	m := &Manager{}
	got, err := m.resolveBinary(InstallOptions{})
	if err != nil || got != exe {
		t.Errorf("default binary = %q, %v; want the running executable %q", got, err, exe)
	}
	dir := winetest.TempDir(t)
	missing := filepath.Join(dir, "nope.exe")
	if _, err := m.resolveBinary(InstallOptions{Binary: missing}); err == nil || !strings.Contains(err.Error(), "nope.exe") {
		t.Errorf("missing binary: err = %v", err)
	}
	var out bytes.Buffer
	m = &Manager{Out: &out, installPath: filepath.Join(dir, "inst", "kanade-agent.exe")}
	got, err = m.resolveBinary(InstallOptions{Binary: exe, Copy: true})
	if err != nil || got != m.installPath {
		t.Fatalf("copy: binary = %q, %v; want %q", got, err, m.installPath)
	}
	if fi, err := os.Stat(got); err != nil || fi.Size() == 0 {
		t.Errorf("copied binary: %v", err)
	}
	if !strings.Contains(out.String(), "copied ") {
		t.Errorf("no copy message: %q", out.String())
	}
}

// TestStatusString: the words status prints.
func TestStatusString(t *testing.T) {
	for _, tc := range []struct {
		st   Status
		want string
	}{
		{Status{State: NotInstalled}, "not installed"},
		{Status{State: Running, PID: 42}, "running (pid 42)"},
		{Status{State: Stopped}, "stopped"},
		{Status{State: Stopped, ExitCode: 64}, "stopped (last exit code 64)"},
		{Status{State: Stopped, Detail: "failed", ExitCode: 2}, "stopped (failed, last exit code 2)"},
		{Status{State: StartPending, Detail: "waiting to restart", ExitCode: 64}, "starting (waiting to restart, last exit code 64)"},
		{Status{State: StopPending, PID: 7}, "stopping (pid 7)"},
	} {
		if got := tc.st.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.st, got, tc.want)
		}
	}
}
