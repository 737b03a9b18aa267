package service

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeSystemd is a fake systemctl on a temporary PATH. It appends every
// call, and whether the unit file exists at that moment, to a log; `show`
// answers like systemd: not-found without the unit file, else the state
// that enable --now / start / stop / disable --now left.
type fakeSystemd struct {
	dir, log, state, unit string
}

func newFakeSystemd(t *testing.T) *fakeSystemd {
	t.Helper()
	dir := t.TempDir()
	f := &fakeSystemd{
		dir:   dir,
		log:   filepath.Join(dir, "calls.log"),
		state: filepath.Join(dir, "state"),
		unit:  filepath.Join(dir, "etc", "systemd", "system", UnitName),
	}
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`#!/bin/sh
PATH=/usr/bin:/bin
if [ -e %[1]q ]; then unit=present; else unit=absent; fi
echo "$* [unit $unit]" >> %[2]q
state=$(cat %[3]q 2>/dev/null || echo inactive)
case "$1" in
show)
	if [ $unit = absent ]; then
		printf 'LoadState=not-found\nActiveState=inactive\nSubState=dead\nMainPID=0\nExecMainStatus=0\n'
	elif [ "$state" = active ]; then
		printf 'LoadState=loaded\nActiveState=active\nSubState=running\nMainPID=4242\nExecMainStatus=0\n'
	else
		printf 'LoadState=loaded\nActiveState=inactive\nSubState=dead\nMainPID=0\nExecMainStatus=0\n'
	fi ;;
enable) echo "Created symlink /etc/systemd/system/multi-user.target.wants/%[4]s"; echo active > %[3]q ;;
start) echo active > %[3]q ;;
stop|disable) echo inactive > %[3]q ;;
daemon-reload) ;;
*) echo "fake systemctl: unexpected $*" >&2; exit 1 ;;
esac
`, f.unit, f.log, f.state, UnitName)
	if err := os.WriteFile(filepath.Join(bin, "systemctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	return f
}

// calls returns the logged systemctl calls since the last call to calls.
func (f *fakeSystemd) calls(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(f.log)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(f.log); err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func (f *fakeSystemd) manager(out *bytes.Buffer) *Manager {
	m := &Manager{unitPath: f.unit, installPath: filepath.Join(f.dir, "usr", "local", "bin", "kanade-agent")}
	if out != nil {
		m.Out = out
	}
	return m
}

func writeTestConfig(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "agent.toml")
	if err := os.WriteFile(p, []byte("[agent]\nid = \"pc1\"\nnats_urls = [\"nats://127.0.0.1:4222\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// show is how the fake logs a `systemctl show` of the unit.
const show = "show --property=LoadState --property=ActiveState --property=SubState --property=MainPID --property=ExecMainStatus kanade-agent.service"

func equalCalls(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s: systemctl calls\n  %s\nwant\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestLinuxInstallUninstallWithFakeSystemctl: install checks that systemd
// answers, writes the unit (the generated text, mode 0644), then runs
// daemon-reload and enable --now, in that order; a second install rewrites it and says so; uninstall runs
// disable --now while the unit exists, removes it, then daemon-reload; a
// second uninstall does nothing.
func TestLinuxInstallUninstallWithFakeSystemctl(t *testing.T) {
	f := newFakeSystemd(t)
	bin := filepath.Join(t.TempDir(), "kanade-agent")
	if err := os.WriteFile(bin, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := writeTestConfig(t, t.TempDir())
	var out bytes.Buffer
	m := f.manager(&out)

	if err := m.Install(InstallOptions{Binary: bin, ConfigPath: cfg}); err != nil {
		t.Fatalf("install: %v", err)
	}
	want, err := unitFile(bin, cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(f.unit)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != want {
		t.Errorf("unit file content:\n%s\nwant:\n%s", b, want)
	}
	if !strings.Contains(string(b), "\nExecStart="+bin+" --config "+cfg+"\n") {
		t.Errorf("unit does not run %s --config %s", bin, cfg)
	}
	fi, err := os.Stat(f.unit)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("unit mode %v, want 0644", fi.Mode().Perm())
	}
	equalCalls(t, "install", f.calls(t), []string{
		show + " [unit absent]",
		"daemon-reload [unit present]",
		"enable --now kanade-agent.service [unit present]",
	})
	if s := out.String(); !strings.Contains(s, "Created symlink") || !strings.Contains(s, "enabled and started") || strings.Contains(s, "warning") {
		t.Errorf("install output:\n%s", s)
	}
	if entries, _ := os.ReadDir(filepath.Dir(f.unit)); len(entries) != 1 {
		t.Errorf("unit directory holds %d entries, want only the unit (no temp file)", len(entries))
	}
	st, err := m.Status()
	if err != nil || st.State != Running || st.PID != 4242 {
		t.Errorf("status after install = %v, %v; want running (pid 4242)", st, err)
	}
	f.calls(t)

	out.Reset()
	if err := m.Install(InstallOptions{Binary: bin, ConfigPath: cfg}); err != nil {
		t.Fatalf("second install: %v", err)
	}
	if b2, _ := os.ReadFile(f.unit); string(b2) != want {
		t.Error("second install changed the unit")
	}
	equalCalls(t, "second install", f.calls(t), []string{
		show + " [unit present]",
		"daemon-reload [unit present]",
		"enable --now kanade-agent.service [unit present]",
	})
	if !strings.Contains(out.String(), "installed already") {
		t.Errorf("second install does not say the unit was there:\n%s", out.String())
	}

	out.Reset()
	if err := m.Uninstall(); err != nil {
		t.Fatalf("uninstall: %v", err)
	}
	if _, err := os.Stat(f.unit); !os.IsNotExist(err) {
		t.Errorf("unit still there after uninstall: %v", err)
	}
	equalCalls(t, "uninstall", f.calls(t), []string{
		"disable --now kanade-agent.service [unit present]",
		"daemon-reload [unit absent]",
	})
	if st, err := m.Status(); err != nil || st.State != NotInstalled {
		t.Errorf("status after uninstall = %v, %v; want not installed", st, err)
	}
	f.calls(t)

	out.Reset()
	if err := m.Uninstall(); err != nil {
		t.Fatalf("second uninstall: %v", err)
	}
	if calls := f.calls(t); calls != nil {
		t.Errorf("second uninstall called systemctl: %q", calls)
	}
	if !strings.Contains(out.String(), "not installed") {
		t.Errorf("second uninstall said %q", out.String())
	}
}

// TestLinuxInstallCopyDefaultConfigAndWarning: with --copy the unit runs
// the copy; without --config it passes /etc/kanade/agent.toml; a config
// file the agent cannot load is a warning, not a failure.
func TestLinuxInstallCopyDefaultConfigAndWarning(t *testing.T) {
	f := newFakeSystemd(t)
	src := filepath.Join(t.TempDir(), "kanade-agent")
	if err := os.WriteFile(src, []byte("agent"), 0o755); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	m := f.manager(&out)
	if err := m.Install(InstallOptions{Binary: src, Copy: true}); err != nil {
		t.Fatalf("install: %v", err)
	}
	b, err := os.ReadFile(f.unit)
	if err != nil {
		t.Fatal(err)
	}
	if want := "\nExecStart=" + m.installPath + " --config /etc/kanade/agent.toml\n"; !strings.Contains(string(b), want) {
		t.Errorf("unit lacks %q:\n%s", want, b)
	}
	checkFile(t, m.installPath, "agent")

	out.Reset()
	missing := filepath.Join(t.TempDir(), "agent.toml")
	if err := m.Install(InstallOptions{Binary: src, ConfigPath: missing}); err != nil {
		t.Fatalf("install with a missing config: %v", err)
	}
	if want := "warning: config file " + missing + " does not exist"; !strings.Contains(out.String(), want) {
		t.Errorf("output lacks %q:\n%s", want, out.String())
	}
}

// TestLinuxStartStopStatus: start and stop call systemctl and report the
// new state; on a missing unit they fail with ErrNotInstalled without
// calling start or stop.
func TestLinuxStartStopStatus(t *testing.T) {
	f := newFakeSystemd(t)
	var out bytes.Buffer
	m := f.manager(&out)
	for name, op := range map[string]func() error{"start": m.Start, "stop": m.Stop} {
		if err := op(); !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "kanade-agent service install") {
			t.Errorf("%s without the unit: err = %v, want ErrNotInstalled with the install hint", name, err)
		}
		equalCalls(t, name+" without the unit", f.calls(t), []string{show + " [unit absent]"})
	}

	if err := os.MkdirAll(filepath.Dir(f.unit), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.unit, []byte("[Unit]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if st, err := m.Status(); err != nil || st.State != Stopped {
		t.Fatalf("status = %v, %v; want stopped", st, err)
	}
	f.calls(t)
	if err := m.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	equalCalls(t, "start", f.calls(t), []string{show + " [unit present]", "start kanade-agent.service [unit present]", show + " [unit present]"})
	if !strings.Contains(out.String(), "running (pid 4242)") {
		t.Errorf("start printed %q", out.String())
	}
	out.Reset()
	if err := m.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	equalCalls(t, "stop", f.calls(t), []string{show + " [unit present]", "stop kanade-agent.service [unit present]", show + " [unit present]"})
	if strings.TrimSpace(out.String()) != "stopped" {
		t.Errorf("stop printed %q", out.String())
	}
}

// TestLinuxWithoutSystemctl: every command fails with a message naming
// systemctl, and install writes nothing.
func TestLinuxWithoutSystemctl(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	unit := filepath.Join(t.TempDir(), "system", UnitName)
	m := &Manager{unitPath: unit}
	bin := filepath.Join(t.TempDir(), "kanade-agent")
	if err := os.WriteFile(bin, []byte("agent"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, statusErr := m.Status()
	for name, err := range map[string]error{
		"install":   m.Install(InstallOptions{Binary: bin}),
		"uninstall": m.Uninstall(),
		"start":     m.Start(),
		"stop":      m.Stop(),
		"status":    statusErr,
	} {
		if err == nil || !strings.Contains(err.Error(), "systemctl not found") {
			t.Errorf("%s: err = %v, want systemctl not found", name, err)
		}
	}
	if _, err := os.Stat(unit); !os.IsNotExist(err) {
		t.Errorf("install without systemctl wrote %s", unit)
	}
}

// TestLinuxSystemctlFailureIsReported: when systemd does not answer (a
// container without it running) install fails before writing the unit;
// when a later call fails, install stops there. Either way the error names
// the call and carries systemctl's output.
func TestLinuxSystemctlFailureIsReported(t *testing.T) {
	for _, tc := range []struct {
		name, script, wantCall, wantOutput string
		wantUnit                           bool
	}{
		{"systemd not running",
			"#!/bin/sh\necho 'System has not been booted with systemd as init system (PID 1).' >&2\nexit 1\n",
			"systemctl show", "System has not been booted with systemd", false},
		{"enable fails",
			"#!/bin/sh\ncase \"$1\" in show|daemon-reload) exit 0;; esac\necho 'Failed to enable unit: Access denied' >&2\nexit 1\n",
			"systemctl enable --now kanade-agent.service", "Failed to enable unit: Access denied", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "systemctl"), []byte(tc.script), 0o755); err != nil {
				t.Fatal(err)
			}
			t.Setenv("PATH", dir)
			bin := filepath.Join(dir, "kanade-agent")
			if err := os.WriteFile(bin, []byte("agent"), 0o755); err != nil {
				t.Fatal(err)
			}
			unit := filepath.Join(dir, "system", UnitName)
			m := &Manager{unitPath: unit}
			err := m.Install(InstallOptions{Binary: bin, ConfigPath: writeTestConfig(t, dir)})
			if err == nil || !strings.Contains(err.Error(), tc.wantCall) || !strings.Contains(err.Error(), tc.wantOutput) {
				t.Errorf("err = %v, want %q and %q", err, tc.wantCall, tc.wantOutput)
			}
			if _, statErr := os.Stat(unit); (statErr == nil) != tc.wantUnit {
				t.Errorf("unit written = %v, want %v", statErr == nil, tc.wantUnit)
			}
		})
	}
}

// TestParseShow maps systemd's states to status words.
func TestParseShow(t *testing.T) {
	for _, tc := range []struct {
		show string
		want string
	}{
		{"LoadState=not-found\nActiveState=inactive\nMainPID=0\n", "not installed"},
		{"LoadState=loaded\nActiveState=active\nSubState=running\nMainPID=99\nExecMainStatus=0\n", "running (pid 99)"},
		{"LoadState=loaded\nActiveState=inactive\nSubState=dead\nMainPID=0\nExecMainStatus=0\n", "stopped"},
		{"LoadState=loaded\nActiveState=failed\nSubState=failed\nMainPID=0\nExecMainStatus=2\n", "stopped (failed, last exit code 2)"},
		{"LoadState=loaded\nActiveState=activating\nSubState=auto-restart\nMainPID=0\nExecMainStatus=64\n", "starting (waiting to restart, last exit code 64)"},
		{"LoadState=loaded\nActiveState=deactivating\nSubState=stop-sigterm\nMainPID=12\nExecMainStatus=0\n", "stopping (pid 12)"},
	} {
		if got := parseShow(tc.show).String(); got != tc.want {
			t.Errorf("parseShow(%q) = %q, want %q", tc.show, got, tc.want)
		}
	}
}
