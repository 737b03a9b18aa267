package service

// The Windows service settings as a pure function, in a file every
// platform compiles so that a plain `go test` on Linux asserts them.
// golang.org/x/sys/windows/svc/mgr itself only builds for Windows, so the
// spec mirrors the mgr types field by field and install_windows.go
// converts it; the constants below are the Win32 values, and
// install_windows.go fails to compile if they ever differ from mgr's.

import (
	"strings"
	"time"
)

// Win32 values used by the spec (winsvc.h).
const (
	winServiceWin32OwnProcess = 0x10 // SERVICE_WIN32_OWN_PROCESS
	winStartAutomatic         = 2    // SERVICE_AUTO_START (mgr.StartAutomatic)
	winErrorNormal            = 1    // SERVICE_ERROR_NORMAL (mgr.ErrorNormal)
	winActionRestart          = 1    // SC_ACTION_RESTART (mgr.ServiceRestart)
	winLocalSystem            = "LocalSystem"
)

// WindowsConfig mirrors the mgr.Config fields the agent's service sets.
type WindowsConfig struct {
	ServiceType  uint32
	StartType    uint32
	ErrorControl uint32
	// BinaryPathName is the full command line the SCM runs: the quoted
	// executable and its arguments.
	BinaryPathName   string
	ServiceStartName string
	DisplayName      string
	Description      string
	DelayedAutoStart bool
}

// RecoveryAction mirrors mgr.RecoveryAction.
type RecoveryAction struct {
	Type  int
	Delay time.Duration
}

// ServiceSpec is everything `service install` sets on Windows.
type ServiceSpec struct {
	Name string
	// Binary and Args are what mgr.CreateService takes; Config's
	// BinaryPathName is the same command line, for mgr.UpdateConfig.
	Binary string
	Args   []string
	Config WindowsConfig
	// RecoveryActions and ResetPeriod (seconds) go to
	// mgr.Service.SetRecoveryActions.
	RecoveryActions []RecoveryAction
	ResetPeriod     uint32
	// RecoveryOnNonCrashFailures goes to
	// SetRecoveryActionsOnNonCrashFailures. Without it the SCM runs the
	// recovery actions only when the process dies without reporting
	// SERVICE_STOPPED; with it, a service that stops with a non-zero exit
	// code counts as failed too. That is what restarts the agent after a
	// self-update, which ends with exit code 64 (reported by Run as the
	// service-specific exit code).
	RecoveryOnNonCrashFailures bool
}

// windowsServiceSpec returns the KanadeAgent service settings for the
// agent at binary; configPath, when not empty, is passed as
// `--config configPath`.
//
// Automatic start without delay (the agent must be reachable right after
// boot; it never needs the network to start), LocalSystem (it runs
// administrators' scripts), and a restart 5 s, 15 s and then 60 s after
// each failure, the failure count resetting after a day without one.
func windowsServiceSpec(binary, configPath string) ServiceSpec {
	var args []string
	if configPath != "" {
		args = []string{"--config", configPath}
	}
	return ServiceSpec{
		Name:   Name,
		Binary: binary,
		Args:   args,
		Config: WindowsConfig{
			ServiceType:      winServiceWin32OwnProcess,
			StartType:        winStartAutomatic,
			ErrorControl:     winErrorNormal,
			BinaryPathName:   windowsCommandLine(binary, args),
			ServiceStartName: winLocalSystem,
			DisplayName:      DisplayName,
			Description:      Description,
			DelayedAutoStart: false,
		},
		RecoveryActions: []RecoveryAction{
			{Type: winActionRestart, Delay: 5 * time.Second},
			{Type: winActionRestart, Delay: 15 * time.Second},
			{Type: winActionRestart, Delay: 60 * time.Second},
		},
		ResetPeriod:                uint32((24 * time.Hour) / time.Second),
		RecoveryOnNonCrashFailures: true,
	}
}

// windowsCommandLine joins an executable and its arguments the way
// mgr.CreateService does (syscall.EscapeArg on each), so that an update
// writes the same command line a fresh install does. A path with a space
// ("C:\Program Files\…") is quoted: an unquoted service path with spaces
// lets a C:\Program.exe run as SYSTEM.
func windowsCommandLine(exe string, args []string) string {
	var b strings.Builder
	b.WriteString(windowsEscapeArg(exe))
	for _, a := range args {
		b.WriteByte(' ')
		b.WriteString(windowsEscapeArg(a))
	}
	return b.String()
}

// windowsEscapeArg is syscall.EscapeArg (Windows), which other platforms
// lack: quote an argument holding a space or tab, double backslashes that
// precede a quote or the closing quote, escape quotes.
func windowsEscapeArg(s string) string {
	if s == "" {
		return `""`
	}
	if !strings.ContainsAny(s, "\"\\ \t") {
		return s
	}
	quote := strings.ContainsAny(s, " \t")
	if !strings.ContainsAny(s, `"\`) {
		return `"` + s + `"`
	}
	var b strings.Builder
	if quote {
		b.WriteByte('"')
	}
	slashes := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '\\':
			slashes++
		case '"':
			b.WriteString(strings.Repeat(`\`, slashes+1))
			slashes = 0
		default:
			slashes = 0
		}
		b.WriteByte(c)
	}
	if quote {
		b.WriteString(strings.Repeat(`\`, slashes))
		b.WriteByte('"')
	}
	return b.String()
}
