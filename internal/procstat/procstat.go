// Package procstat measures the agent's own footprint (resident memory and
// CPU use) for heartbeats. It reads the operating system's accounting for
// the current process only and never spawns anything.
package procstat

import (
	"time"
)

// Sampler turns cumulative CPU time into a percentage between two samples.
// The zero value is ready; it is not safe for concurrent use.
type Sampler struct {
	lastCPU  time.Duration
	lastWall time.Time
}

// Sample returns the resident set size in bytes and the CPU use since the
// previous call as a percentage of one core, or nil on the first call (one
// sample cannot give a rate).
func (s *Sampler) Sample() (rss uint64, cpuPct *float64, err error) {
	rss, cpu, err := self()
	if err != nil {
		return 0, nil, err
	}
	now := time.Now()
	if !s.lastWall.IsZero() {
		if wall := now.Sub(s.lastWall); wall > 0 {
			pct := float64(cpu-s.lastCPU) / float64(wall) * 100
			if pct < 0 {
				pct = 0
			}
			cpuPct = &pct
		}
	}
	s.lastCPU, s.lastWall = cpu, now
	return rss, cpuPct, nil
}
