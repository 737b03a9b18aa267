//go:build !linux && !windows

package hostperf

import (
	"errors"
)

func read() (counters, error) {
	return counters{}, errors.New("hostperf: not supported on this platform")
}
