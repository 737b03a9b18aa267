//go:build !linux

package bench

import (
	"errors"
	"syscall"
)

// readProc is Linux-only: the figures come from /proc.
func readProc(int) (ProcSample, error) {
	return ProcSample{}, errors.New("bench: process statistics need Linux /proc")
}

// childAttr has nothing to add here: the child notices the end of its
// stdin when the bench exits.
func childAttr() *syscall.SysProcAttr { return nil }
