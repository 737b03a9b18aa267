package service

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/mgr"

	"github.com/kanade-project/kanade/internal/agentconfig"
)

const adminHint = "The service commands need an administrator: run them from an elevated prompt (Run as administrator)."

// The portable spec (install_winspec.go) spells out the Win32 constants;
// these lines stop compiling if one ever differs from x/sys's, because a
// constant index out of the array's range (or a negative one) is a
// compile-time error.
var (
	_ = [1]struct{}{}[winServiceWin32OwnProcess-windows.SERVICE_WIN32_OWN_PROCESS]
	_ = [1]struct{}{}[winStartAutomatic-mgr.StartAutomatic]
	_ = [1]struct{}{}[winErrorNormal-mgr.ErrorNormal]
	_ = [1]struct{}{}[winActionRestart-mgr.ServiceRestart]
)

// stopTimeout is how long uninstall and stop wait for the agent to stop;
// the same as the systemd unit's TimeoutStopSec.
const stopTimeout = 30 * time.Second

// startTimeout is how long start waits for the agent to leave
// StartPending.
const startTimeout = 30 * time.Second

func programFiles() string {
	// ProgramW6432 is the 64-bit Program Files even for a 32-bit process,
	// whose ProgramFiles is "Program Files (x86)".
	for _, k := range []string{"ProgramW6432", "ProgramFiles"} {
		if p := os.Getenv(k); p != "" {
			return p
		}
	}
	return `C:\Program Files`
}

func defaultInstallPath() string {
	return filepath.Join(programFiles(), "Kanade", "kanade-agent.exe")
}

// mgrConfig converts the portable spec to mgr's type.
func mgrConfig(c WindowsConfig) mgr.Config {
	return mgr.Config{
		ServiceType:      c.ServiceType,
		StartType:        c.StartType,
		ErrorControl:     c.ErrorControl,
		BinaryPathName:   c.BinaryPathName,
		ServiceStartName: c.ServiceStartName,
		DisplayName:      c.DisplayName,
		Description:      c.Description,
		DelayedAutoStart: c.DelayedAutoStart,
	}
}

func mgrRecoveryActions(as []RecoveryAction) []mgr.RecoveryAction {
	out := make([]mgr.RecoveryAction, len(as))
	for i, a := range as {
		out[i] = mgr.RecoveryAction{Type: a.Type, Delay: a.Delay}
	}
	return out
}

// scmError explains an error of the Service Control Manager.
func scmError(what string, err error) error {
	switch {
	case errors.Is(err, windows.ERROR_ACCESS_DENIED):
		return fmt.Errorf("%s: %w\n%s", what, err, adminHint)
	case errors.Is(err, windows.ERROR_SERVICE_MARKED_FOR_DELETE):
		return fmt.Errorf("%s: %w\nClose services.msc, Event Viewer or any tool holding the service open (or reboot), then try again.", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func connect() (*mgr.Mgr, error) {
	m, err := mgr.Connect()
	if err != nil {
		return nil, scmError("connecting to the Service Control Manager", err)
	}
	return m, nil
}

// openService opens the named service, or says it is not installed.
func openService(m *mgr.Mgr, name string) (*mgr.Service, error) {
	s, err := m.OpenService(name)
	if errors.Is(err, windows.ERROR_SERVICE_DOES_NOT_EXIST) {
		return nil, fmt.Errorf("service %s: %w (install it with: kanade-agent service install)", name, ErrNotInstalled)
	}
	if err != nil {
		return nil, scmError("opening service "+name, err)
	}
	return s, nil
}

// applySpec creates the service, or updates it when it exists, and sets
// its recovery settings. It reports whether the service was created. A
// service it created but could not finish setting up is deleted again:
// a KanadeAgent without its recovery actions would stay down after the
// first self-update.
func applySpec(m *mgr.Mgr, spec ServiceSpec) (created bool, err error) {
	cfg := mgrConfig(spec.Config)
	s, err := m.OpenService(spec.Name)
	switch {
	case err == nil:
		if err := s.UpdateConfig(cfg); err != nil {
			s.Close()
			return false, scmError("updating service "+spec.Name, err)
		}
	case errors.Is(err, windows.ERROR_SERVICE_DOES_NOT_EXIST):
		s, err = m.CreateService(spec.Name, spec.Binary, cfg, spec.Args...)
		if err != nil {
			return false, scmError("creating service "+spec.Name, err)
		}
		created = true
	default:
		return false, scmError("opening service "+spec.Name, err)
	}
	defer s.Close()
	if err := setRecovery(s, spec); err != nil {
		if created {
			_ = s.Delete()
		}
		return false, err
	}
	return created, nil
}

func setRecovery(s *mgr.Service, spec ServiceSpec) error {
	if err := s.SetRecoveryActions(mgrRecoveryActions(spec.RecoveryActions), spec.ResetPeriod); err != nil {
		return scmError("setting the recovery actions of "+spec.Name, err)
	}
	if err := s.SetRecoveryActionsOnNonCrashFailures(spec.RecoveryOnNonCrashFailures); err != nil {
		return scmError("setting the failure-actions flag of "+spec.Name, err)
	}
	return nil
}

func (m *Manager) install(o InstallOptions) error {
	// Connecting first checks for an administrator before anything is
	// copied.
	mg, err := connect()
	if err != nil {
		return err
	}
	defer mg.Disconnect()
	binary, err := m.resolveBinary(o)
	if err != nil {
		return err
	}
	configPath := o.ConfigPath
	if configPath != "" {
		if configPath, err = filepath.Abs(configPath); err != nil {
			return err
		}
		m.warnConfig(configPath)
	} else {
		m.warnConfig(agentconfig.Resolve(""))
	}
	spec := windowsServiceSpec(binary, configPath)
	spec.Name = m.serviceName()
	created, err := applySpec(mg, spec)
	if err != nil {
		return err
	}
	verb := "installed"
	if !created {
		verb = "updated"
	}
	m.printf("%s service %s (%s): %s\n", verb, spec.Name, spec.Config.DisplayName, spec.Config.BinaryPathName)
	m.printf("automatic start as LocalSystem; after a failure or a non-zero exit the SCM restarts it after 5 s, 15 s, then 60 s\n")
	if created {
		m.printf("start it with: kanade-agent service start\n")
	} else {
		m.printf("the changes apply at its next start\n")
	}
	if !strings.EqualFold(filepath.Dir(binary), filepath.Dir(defaultInstallPath())) {
		m.printf("note: SYSTEM runs whatever file is at %s: keep it where only administrators can write (the standard place is %s; --copy puts it there)\n",
			binary, defaultInstallPath())
	}
	return nil
}

// waitWhile queries the service until still(state) is false or timeout
// passes, and returns the last status. The SCM has no blocking wait for a
// state change that a console tool can use simply; sc.exe and net.exe
// poll too.
func waitWhile(s *mgr.Service, still func(svc.State) bool, timeout time.Duration) (svc.Status, error) {
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		q, err := s.Query()
		if err != nil {
			return q, scmError("querying service "+s.Name, err)
		}
		if !still(q.State) || time.Now().After(deadline) {
			return q, nil
		}
		<-t.C
	}
}

func notStopped(st svc.State) bool { return st != svc.Stopped }

// stopAndWait asks the service to stop and waits up to stopTimeout.
func stopAndWait(s *mgr.Service) (svc.Status, error) {
	q, err := s.Query()
	if err != nil {
		return q, scmError("querying service "+s.Name, err)
	}
	if q.State == svc.Stopped {
		return q, nil
	}
	deadline := time.Now().Add(stopTimeout)
	if q.State == svc.StartPending {
		// A starting service cannot take a stop request yet.
		if q, err = waitWhile(s, func(st svc.State) bool { return st == svc.StartPending }, stopTimeout); err != nil {
			return q, err
		}
	}
	if _, err := s.Control(svc.Stop); err != nil && !errors.Is(err, windows.ERROR_SERVICE_NOT_ACTIVE) {
		return q, scmError("stopping service "+s.Name, err)
	}
	return waitWhile(s, notStopped, time.Until(deadline))
}

func (m *Manager) uninstall() error {
	mg, err := connect()
	if err != nil {
		return err
	}
	defer mg.Disconnect()
	name := m.serviceName()
	s, err := mg.OpenService(name)
	if errors.Is(err, windows.ERROR_SERVICE_DOES_NOT_EXIST) {
		m.printf("service %s is not installed; nothing to do\n", name)
		return nil
	}
	if err != nil {
		return scmError("opening service "+name, err)
	}
	defer s.Close()
	q, err := stopAndWait(s)
	if err != nil {
		return err
	}
	if err := s.Delete(); err != nil && !errors.Is(err, windows.ERROR_SERVICE_MARKED_FOR_DELETE) {
		return scmError("deleting service "+name, err)
	}
	if q.State != svc.Stopped {
		return fmt.Errorf("service %s did not stop within %s; it is marked for deletion and disappears once its process (pid %d) exits", name, stopTimeout, q.ProcessId)
	}
	m.printf("service %s stopped and removed; the binary and %s are left in place\n", name, filepath.Dir(filepath.Dir(agentconfig.DefaultPath())))
	return nil
}

func (m *Manager) start() error {
	mg, err := connect()
	if err != nil {
		return err
	}
	defer mg.Disconnect()
	s, err := openService(mg, m.serviceName())
	if err != nil {
		return err
	}
	defer s.Close()
	q, err := s.Query()
	if err != nil {
		return scmError("querying service "+s.Name, err)
	}
	switch q.State {
	case svc.Running:
		m.printf("already %s\n", toStatus(q))
		return nil
	case svc.StopPending:
		if q, err = waitWhile(s, notStopped, stopTimeout); err != nil {
			return err
		}
	}
	if q.State != svc.StartPending {
		if err := s.Start(); err != nil && !errors.Is(err, windows.ERROR_SERVICE_ALREADY_RUNNING) {
			return scmError("starting service "+s.Name, err)
		}
	}
	q, err = waitWhile(s, func(st svc.State) bool { return st == svc.StartPending }, startTimeout)
	if err != nil {
		return err
	}
	st := toStatus(q)
	if st.State != Running {
		return fmt.Errorf("service %s did not start: it is %s; see %s and the System event log",
			s.Name, st, filepath.Join(agentconfig.DefaultLogDir(), "agent.log"))
	}
	m.printf("%s\n", st)
	return nil
}

func (m *Manager) stop() error {
	mg, err := connect()
	if err != nil {
		return err
	}
	defer mg.Disconnect()
	s, err := openService(mg, m.serviceName())
	if err != nil {
		return err
	}
	defer s.Close()
	q, err := stopAndWait(s)
	if err != nil {
		return err
	}
	st := toStatus(q)
	if st.State != Stopped {
		return fmt.Errorf("service %s is still %s after %s", s.Name, st, stopTimeout)
	}
	m.printf("%s\n", st)
	return nil
}

// status needs no administrator: it opens the SCM and the service with
// the query rights only.
func (m *Manager) status() (Status, error) {
	h, err := windows.OpenSCManager(nil, nil, windows.SC_MANAGER_CONNECT)
	if err != nil {
		return Status{}, scmError("connecting to the Service Control Manager", err)
	}
	defer windows.CloseServiceHandle(h)
	name := m.serviceName()
	namep, err := windows.UTF16PtrFromString(name)
	if err != nil {
		return Status{}, err
	}
	sh, err := windows.OpenService(h, namep, windows.SERVICE_QUERY_STATUS)
	if errors.Is(err, windows.ERROR_SERVICE_DOES_NOT_EXIST) {
		return Status{State: NotInstalled}, nil
	}
	if err != nil {
		return Status{}, scmError("opening service "+name, err)
	}
	s := &mgr.Service{Name: name, Handle: sh}
	defer s.Close()
	q, err := s.Query()
	if err != nil {
		return Status{}, scmError("querying service "+name, err)
	}
	return toStatus(q), nil
}

// toStatus maps the SCM's status to the platform-neutral one.
func toStatus(q svc.Status) Status {
	var st Status
	switch q.State {
	case svc.Stopped:
		st.State = Stopped
	case svc.StartPending, svc.ContinuePending:
		st.State = StartPending
	case svc.StopPending:
		st.State = StopPending
	case svc.Running:
		st.State = Running
	case svc.PausePending, svc.Paused:
		st.State = Paused
	}
	if st.State != Stopped {
		st.PID = int(q.ProcessId)
		return st
	}
	if q.Win32ExitCode == uint32(windows.ERROR_SERVICE_SPECIFIC_ERROR) {
		st.ExitCode = int(q.ServiceSpecificExitCode)
	} else {
		st.ExitCode = int(q.Win32ExitCode)
	}
	return st
}
