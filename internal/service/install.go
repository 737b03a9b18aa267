package service

// This file is the platform-neutral half of `kanade-agent service …`:
// install, uninstall, start, stop and status of the agent's service. The
// Windows half (install_windows.go) drives the Service Control Manager
// through golang.org/x/sys/windows/svc/mgr; the Linux half
// (install_linux.go) writes a systemd unit and drives systemctl; other
// systems get ErrUnsupported (install_other.go).

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/kanade-project/kanade/internal/agentconfig"
)

// Names and texts shared by the Windows service and the systemd unit.
const (
	// DisplayName is what services.msc and `systemctl status` show.
	DisplayName = "Kanade Agent"
	// Description explains the service to an administrator who finds it.
	Description = "kanade endpoint agent: runs commands and reports inventory for the kanade fleet manager over NATS (outbound connections only)."
	// UnitName is the systemd unit of the agent.
	UnitName = "kanade-agent.service"
	// DefaultUnitPath is where install writes the systemd unit.
	DefaultUnitPath = "/etc/systemd/system/" + UnitName
	// DefaultLinuxBinary is where --copy puts the agent on Linux, and the
	// binary of the reference unit file deploy/kanade-agent.service.
	DefaultLinuxBinary = "/usr/local/bin/kanade-agent"
)

// ErrNotInstalled is returned (wrapped) by Start and Stop when the agent's
// service does not exist.
var ErrNotInstalled = errors.New("service not installed")

// ErrUnsupported is returned (wrapped) on systems without a supported
// service manager.
var ErrUnsupported = errors.New("not supported on this system")

// InstallOptions are the settings of `kanade-agent service install`.
type InstallOptions struct {
	// Binary is the agent executable the service runs; empty means the
	// running executable. A relative path is made absolute.
	Binary string
	// ConfigPath is agent.toml. Windows: given to the service as
	// `--config FILE` when set, else the agent uses its default path.
	// Linux: the unit always passes --config, by default /etc/kanade/agent.toml.
	ConfigPath string
	// Copy copies Binary to the platform's install location first
	// (%ProgramFiles%\Kanade\kanade-agent.exe, /usr/local/bin/kanade-agent)
	// and registers that copy.
	Copy bool
}

// Manager installs and controls the agent's service. Its zero value (with
// Out set) manages the real KanadeAgent service or kanade-agent.service;
// the unexported fields let tests point it elsewhere without any
// package-level state.
type Manager struct {
	// Out receives progress and status lines; nil discards them.
	Out io.Writer

	// name is the Windows service name; empty means Name.
	name string
	// unitPath is the systemd unit file; empty means DefaultUnitPath.
	unitPath string
	// installPath is where Copy puts the binary; empty means the
	// platform default.
	installPath string
}

// Install registers the agent as a service (or updates the registration
// when it exists). On Linux it also enables and starts the unit, as
// `systemctl enable --now` does; on Windows start it with Start.
func (m *Manager) Install(o InstallOptions) error { return m.install(o) }

// Uninstall stops the service (waiting up to 30 s) and removes it. A
// service that is not installed is not an error.
func (m *Manager) Uninstall() error { return m.uninstall() }

// Start starts the service and waits until it runs.
func (m *Manager) Start() error { return m.start() }

// Stop stops the service and waits until it has stopped.
func (m *Manager) Stop() error { return m.stop() }

// Status reports the state of the service; a service that is not
// installed is a Status with State NotInstalled, not an error.
func (m *Manager) Status() (Status, error) { return m.status() }

func (m *Manager) out() io.Writer {
	if m.Out == nil {
		return io.Discard
	}
	return m.Out
}

func (m *Manager) printf(format string, args ...any) {
	fmt.Fprintf(m.out(), format, args...)
}

func (m *Manager) serviceName() string {
	if m.name != "" {
		return m.name
	}
	return Name
}

func (m *Manager) unitFilePath() string {
	if m.unitPath != "" {
		return m.unitPath
	}
	return DefaultUnitPath
}

func (m *Manager) binaryInstallPath() string {
	if m.installPath != "" {
		return m.installPath
	}
	return defaultInstallPath()
}

// State is a service's state, the same words on every platform.
type State int

// States of the service.
const (
	StateUnknown State = iota
	NotInstalled
	Stopped
	StartPending
	StopPending
	Running
	Paused
)

func (s State) String() string {
	switch s {
	case NotInstalled:
		return "not installed"
	case Stopped:
		return "stopped"
	case StartPending:
		return "starting"
	case StopPending:
		return "stopping"
	case Running:
		return "running"
	case Paused:
		return "paused"
	}
	return "unknown"
}

// Status is what `kanade-agent service status` reports.
type Status struct {
	State State
	// PID is the agent's process id while it runs, else 0.
	PID int
	// ExitCode is the last exit code of the agent when it is known and
	// not zero (64 right after a self-update, for example).
	ExitCode int
	// Detail is the service manager's own word when it adds something
	// (systemd: "failed", "auto-restart").
	Detail string
}

func (s Status) String() string {
	out := s.State.String()
	var extra []string
	if s.Detail != "" {
		extra = append(extra, s.Detail)
	}
	if s.PID != 0 {
		extra = append(extra, fmt.Sprintf("pid %d", s.PID))
	}
	if s.ExitCode != 0 {
		extra = append(extra, fmt.Sprintf("last exit code %d", s.ExitCode))
	}
	for i, e := range extra {
		if i == 0 {
			out += " (" + e
		} else {
			out += ", " + e
		}
		if i == len(extra)-1 {
			out += ")"
		}
	}
	return out
}

// resolveBinary returns the absolute path of the binary the service must
// run: o.Binary or the running executable, copied to the install location
// first when o.Copy is set.
func (m *Manager) resolveBinary(o InstallOptions) (string, error) {
	src := o.Binary
	if src == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("locating the running executable (give --binary): %w", err)
		}
		src = exe
	}
	src, err := filepath.Abs(src)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(src)
	if err != nil {
		return "", fmt.Errorf("agent binary: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("agent binary %s is not a regular file", src)
	}
	if !o.Copy {
		return src, nil
	}
	dst := m.binaryInstallPath()
	if err := copyBinary(src, dst); err != nil {
		return "", err
	}
	if dst != src {
		m.printf("copied %s to %s\n", src, dst)
	}
	return dst, nil
}

// copyBinary puts a copy of src at dst (mode 0755), creating dst's
// directory. The copy is written beside dst as dst.new and renamed over
// it, so dst is never a torn file; when dst is a running executable that
// Windows will not replace, dst is first renamed to dst.old (Windows
// allows renaming a running executable, not overwriting it), which the
// agent removes at its next start. Copying a file onto itself does
// nothing.
func copyBinary(src, dst string) error {
	if si, err := os.Stat(src); err != nil {
		return fmt.Errorf("copying the agent binary: %w", err)
	} else if di, err := os.Stat(dst); err == nil && os.SameFile(si, di) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return permissionHint(fmt.Errorf("creating %s: %w", filepath.Dir(dst), err))
	}
	tmp := dst + ".new"
	if err := writeCopy(src, tmp); err != nil {
		_ = os.Remove(tmp)
		return permissionHint(err)
	}
	err := os.Rename(tmp, dst)
	if err == nil {
		return nil
	}
	old := dst + ".old"
	_ = os.Remove(old)
	if err2 := os.Rename(dst, old); err2 != nil {
		_ = os.Remove(tmp)
		return permissionHint(fmt.Errorf("replacing %s: %w (and moving it aside: %v)", dst, err, err2))
	}
	if err := os.Rename(tmp, dst); err != nil {
		_ = os.Rename(old, dst)
		_ = os.Remove(tmp)
		return permissionHint(fmt.Errorf("replacing %s: %w", dst, err))
	}
	return nil
}

func writeCopy(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return fmt.Errorf("copying the agent binary: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying the agent binary to %s: %w", dst, err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return fmt.Errorf("copying the agent binary to %s: %w", dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("copying the agent binary to %s: %w", dst, err)
	}
	// O_CREATE's mode is filtered by the umask; the binary must be
	// executable by the service manager whatever the umask.
	return os.Chmod(dst, 0o755)
}

// warnConfig tells the administrator, without failing the install, that
// the service will not start until its config file is right (the config
// may well be written after the service is registered).
func (m *Manager) warnConfig(path string) {
	if _, err := agentconfig.Load(path); err != nil {
		m.printf("warning: %v\nThe service will keep failing to start until that is fixed.\n", err)
	}
}

// permissionHint adds what to do to a permission error: the service
// commands that change the system need an administrator.
func permissionHint(err error) error {
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("%w\n%s", err, adminHint)
	}
	return err
}
