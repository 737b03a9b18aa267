//go:build !windows && !linux

package service

import (
	"errors"
	"testing"
)

// TestUnsupportedOnThisSystem: every service command fails with
// ErrUnsupported, and the command line exits 1.
func TestUnsupportedOnThisSystem(t *testing.T) {
	m := &Manager{}
	_, statusErr := m.Status()
	for name, err := range map[string]error{
		"install":   m.Install(InstallOptions{}),
		"uninstall": m.Uninstall(),
		"start":     m.Start(),
		"stop":      m.Stop(),
		"status":    statusErr,
	} {
		if !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: err = %v, want ErrUnsupported", name, err)
		}
	}
	if code, _, errOut := runCommand(nil, "status"); code != ExitError || errOut == "" {
		t.Errorf("service status: exit %d, stderr %q; want 1 with a message", code, errOut)
	}
}
