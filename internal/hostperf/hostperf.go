// Package hostperf samples the host's load for host_perf.<pc>: CPU %,
// memory, swap, and disk and network throughput. It reads cumulative OS
// counters and turns two samples into rates, so the first sample has no
// rates (nil) and a sample costs a few small reads, no process spawn.
package hostperf

import (
	"time"

	"github.com/kanade-project/kanade/internal/wire"
)

// counters is one reading of the cumulative counters.
type counters struct {
	at                  time.Time
	cpuBusy, cpuTotal   float64 // any unit, as long as both match
	memTotal, memUsed   uint64
	swapTotal, swapUsed uint64
	diskRead, diskWrite uint64 // bytes
	netRx, netTx        uint64 // bytes
	// haveDisk/haveNet are false where the platform has no counter.
	haveDisk, haveNet bool
}

// Sampler keeps the previous reading. Not safe for concurrent use.
type Sampler struct {
	prev *counters
}

// Sample returns the current figures; rates are nil on the first call.
func (s *Sampler) Sample(pc string) (wire.HostPerf, error) {
	c, err := read()
	if err != nil {
		return wire.HostPerf{}, err
	}
	hp := wire.HostPerf{
		PCID: pc, At: c.at.UTC(),
		MemTotalBytes: c.memTotal, MemUsedBytes: c.memUsed,
		SwapTotalBytes: c.swapTotal, SwapUsedBytes: c.swapUsed,
	}
	if p := s.prev; p != nil {
		secs := c.at.Sub(p.at).Seconds()
		if dt := c.cpuTotal - p.cpuTotal; dt > 0 {
			v := (c.cpuBusy - p.cpuBusy) / dt * 100
			hp.CPUPct = &v
		}
		if secs > 0 {
			rate := func(a, b uint64) *float64 {
				if a < b {
					return nil // counter reset
				}
				v := float64(a-b) / secs
				return &v
			}
			if c.haveDisk && p.haveDisk {
				hp.DiskReadBps, hp.DiskWriteBps = rate(c.diskRead, p.diskRead), rate(c.diskWrite, p.diskWrite)
			}
			if c.haveNet && p.haveNet {
				hp.NetRxBps, hp.NetTxBps = rate(c.netRx, p.netRx), rate(c.netTx, p.netTx)
			}
		}
	}
	s.prev = &c
	return hp, nil
}
