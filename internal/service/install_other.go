//go:build !windows && !linux

package service

import (
	"fmt"
	"runtime"
)

const adminHint = "The service commands change the system: run them as an administrator."

func defaultInstallPath() string { return DefaultLinuxBinary }

func unsupported() error {
	return fmt.Errorf("kanade-agent service: %w (%s): it manages the Windows service and the systemd unit only; "+
		"run `kanade-agent --config FILE` from this system's service manager instead", ErrUnsupported, runtime.GOOS)
}

func (m *Manager) install(InstallOptions) error { return unsupported() }
func (m *Manager) uninstall() error             { return unsupported() }
func (m *Manager) start() error                 { return unsupported() }
func (m *Manager) stop() error                  { return unsupported() }
func (m *Manager) status() (Status, error)      { return Status{}, unsupported() }
