package service

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kanade-project/kanade/internal/agentconfig"
)

const adminHint = "The service commands change the system: run them as root (sudo kanade-agent service …)."

func defaultInstallPath() string { return DefaultLinuxBinary }

// systemctl finds systemctl on PATH before anything is changed: without
// it there is no systemd to install into.
func systemctl() (string, error) {
	p, err := exec.LookPath("systemctl")
	if err != nil {
		return "", fmt.Errorf("systemctl not found on PATH: kanade-agent service needs systemd. "+
			"On a system without it, run `kanade-agent --config %s` from your init system, with KANADE_NATS_TOKEN in its environment",
			agentconfig.DefaultPath())
	}
	return p, nil
}

// runSystemctl runs systemctl with args; its output goes to the Manager's
// output, or into the error when it fails.
func (m *Manager) runSystemctl(bin string, args ...string) error {
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := fmt.Sprintf("systemctl %s: %v", strings.Join(args, " "), err)
		if s := strings.TrimSpace(out.String()); s != "" {
			msg += ": " + s
		}
		if os.Geteuid() != 0 {
			msg += "\n" + adminHint
		}
		return errors.New(msg)
	}
	_, _ = m.out().Write(out.Bytes())
	return nil
}

func (m *Manager) install(o InstallOptions) error {
	sc, err := systemctl()
	if err != nil {
		return err
	}
	// Ask systemd something harmless first: in a container or chroot
	// without a running systemd, fail before anything is written.
	if _, err := showStatus(sc); err != nil {
		return fmt.Errorf("%w\nNothing was changed.", err)
	}
	binary, err := m.resolveBinary(o)
	if err != nil {
		return err
	}
	configPath := o.ConfigPath
	if configPath == "" {
		configPath = agentconfig.DefaultPath()
	}
	if configPath, err = filepath.Abs(configPath); err != nil {
		return err
	}
	text, err := unitFile(binary, configPath)
	if err != nil {
		return err
	}
	m.warnConfig(configPath)
	path := m.unitFilePath()
	_, statErr := os.Stat(path)
	existed := statErr == nil
	if err := writeUnit(path, text); err != nil {
		return err
	}
	m.printf("wrote %s (ExecStart=%s --config %s)\n", path, binary, configPath)
	if err := m.runSystemctl(sc, "daemon-reload"); err != nil {
		return err
	}
	if err := m.runSystemctl(sc, "enable", "--now", UnitName); err != nil {
		return err
	}
	m.printf("%s is enabled and started\n", UnitName)
	if existed {
		m.printf("it was installed already: if it was running, restart it to apply changes (kanade-agent service stop; kanade-agent service start)\n")
	}
	return nil
}

// writeUnit replaces path with text, mode 0644 whatever the umask, through
// a temp file and a rename so systemd never reads half a unit.
func writeUnit(path, text string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return permissionHint(fmt.Errorf("creating %s: %w", dir, err))
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return permissionHint(fmt.Errorf("writing the unit: %w", err))
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		_ = os.Remove(tmp)
		return permissionHint(fmt.Errorf("writing %s: %w", path, err))
	}
	if err := f.Chmod(0o644); err != nil {
		return fail(err)
	}
	if _, err := f.WriteString(text); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return permissionHint(fmt.Errorf("writing %s: %w", path, err))
	}
	return nil
}

func (m *Manager) uninstall() error {
	sc, err := systemctl()
	if err != nil {
		return err
	}
	path := m.unitFilePath()
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		m.printf("%s is not installed (no %s); nothing to do\n", UnitName, path)
		return nil
	}
	// disable --now stops the agent first; systemd waits up to
	// TimeoutStopSec (30 s) before it kills it.
	if err := m.runSystemctl(sc, "disable", "--now", UnitName); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return permissionHint(fmt.Errorf("removing %s: %w", path, err))
	}
	if err := m.runSystemctl(sc, "daemon-reload"); err != nil {
		return err
	}
	m.printf("%s stopped, disabled and removed (%s)\n", UnitName, path)
	return nil
}

func (m *Manager) start() error { return m.transition("start") }

// stop returns once the unit has stopped (systemctl waits, or kills it
// after TimeoutStopSec).
func (m *Manager) stop() error { return m.transition("stop") }

// transition runs `systemctl <verb>` on the installed unit and prints the
// state it ended in.
func (m *Manager) transition(verb string) error {
	sc, err := systemctl()
	if err != nil {
		return err
	}
	if err := m.requireInstalled(sc); err != nil {
		return err
	}
	if err := m.runSystemctl(sc, verb, UnitName); err != nil {
		return err
	}
	st, err := showStatus(sc)
	if err != nil {
		return err
	}
	m.printf("%s\n", st)
	return nil
}

func (m *Manager) requireInstalled(sc string) error {
	st, err := showStatus(sc)
	if err != nil {
		return err
	}
	if st.State == NotInstalled {
		return fmt.Errorf("%s: %w (install it with: kanade-agent service install)", UnitName, ErrNotInstalled)
	}
	return nil
}

func (m *Manager) status() (Status, error) {
	sc, err := systemctl()
	if err != nil {
		return Status{}, err
	}
	return showStatus(sc)
}

// showStatus asks systemd for the unit's state. `systemctl show` answers
// for units that do not exist too (LoadState=not-found) and needs no root.
func showStatus(sc string) (Status, error) {
	args := []string{"show"}
	for _, p := range []string{"LoadState", "ActiveState", "SubState", "MainPID", "ExecMainStatus"} {
		args = append(args, "--property="+p)
	}
	args = append(args, UnitName)
	out, err := exec.Command(sc, args...).Output()
	if err != nil {
		msg := fmt.Sprintf("systemctl %s: %v", strings.Join(args, " "), err)
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			msg += ": " + strings.TrimSpace(string(ee.Stderr))
		}
		return Status{}, errors.New(msg)
	}
	return parseShow(string(out)), nil
}

// parseShow turns `systemctl show` key=value lines into a Status.
func parseShow(out string) Status {
	props := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			props[k] = v
		}
	}
	pid, _ := strconv.Atoi(props["MainPID"])
	code, _ := strconv.Atoi(props["ExecMainStatus"])
	st := Status{PID: pid, ExitCode: code}
	switch props["LoadState"] {
	case "not-found":
		return Status{State: NotInstalled}
	case "masked":
		st.Detail = "masked"
	}
	switch props["ActiveState"] {
	case "active", "reloading":
		st.State = Running
		st.ExitCode = 0
	case "activating":
		st.State = StartPending
		if props["SubState"] == "auto-restart" {
			st.Detail = "waiting to restart"
		}
	case "deactivating":
		st.State = StopPending
	case "inactive":
		st.State = Stopped
	case "failed":
		st.State = Stopped
		st.Detail = "failed"
	default:
		st.State = StateUnknown
		st.Detail = props["ActiveState"]
	}
	if st.State != Running && st.State != StopPending {
		st.PID = 0
	}
	return st
}
