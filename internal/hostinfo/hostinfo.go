// Package hostinfo answers the few host facts every heartbeat carries: the
// hostname, the OS family and a stable machine id that survives renames and
// agent reinstalls (so the backend does not see a duplicate device).
package hostinfo

import (
	"os"
	"runtime"
)

// Hostname returns the host's name, or "unknown-host" when the OS will not
// say (an agent must still be addressable).
func Hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "unknown-host"
	}
	return h
}

// OSFamily is "windows", "linux", … (runtime.GOOS).
func OSFamily() string { return runtime.GOOS }

// MachineID returns the stable hardware/OS identity of this host, or "" when
// none can be read. Linux: /etc/machine-id. Windows: the SMBIOS UUID, falling
// back to the MachineGuid registry value.
func MachineID() string { return machineID() }
