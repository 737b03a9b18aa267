//go:build !linux && !windows

package procstat

import (
	"errors"
	"time"
)

func self() (uint64, time.Duration, error) {
	return 0, 0, errors.New("procstat: not supported on this platform")
}
