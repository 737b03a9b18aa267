package sim

import (
	"fmt"
	"syscall"
)

// RaiseFileLimit raises this process's soft limit on open files to its
// hard limit and returns the new soft limit: each simulated agent holds a
// socket, and the usual soft limit (1,024) is far below a fleet.
func RaiseFileLimit() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, fmt.Errorf("sim: reading the open-file limit: %w", err)
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return 0, fmt.Errorf("sim: raising the open-file limit to %d: %w", l.Max, err)
		}
	}
	return l.Cur, nil
}
