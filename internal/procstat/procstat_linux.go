package procstat

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

func self() (uint64, time.Duration, error) {
	statm, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, 0, fmt.Errorf("procstat: %w", err)
	}
	f := strings.Fields(string(statm))
	if len(f) < 2 {
		return 0, 0, fmt.Errorf("procstat: short /proc/self/statm")
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("procstat: statm: %w", err)
	}
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, 0, fmt.Errorf("procstat: %w", err)
	}
	// The command name (field 2) may contain spaces; fields after the
	// closing parenthesis are positional.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("procstat: malformed /proc/self/stat")
	}
	rest := strings.Fields(s[i+1:])
	// rest[0] is field 3 (state); utime is field 14, stime field 15.
	if len(rest) < 13 {
		return 0, 0, fmt.Errorf("procstat: short /proc/self/stat")
	}
	ut, err1 := strconv.ParseUint(rest[11], 10, 64)
	st, err2 := strconv.ParseUint(rest[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("procstat: malformed cpu times in /proc/self/stat")
	}
	cpu := time.Duration(ut+st) * time.Second / clockTicks
	return pages * uint64(os.Getpagesize()), cpu, nil
}
