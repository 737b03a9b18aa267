package hostperf

import (
	"runtime"
	"testing"
	"time"
)

func TestFirstSampleHasNoRatesSecondHas(t *testing.T) {
	var s Sampler
	first, err := s.Sample("pc")
	if err != nil {
		t.Fatal(err)
	}
	if first.CPUPct != nil || first.DiskReadBps != nil || first.NetRxBps != nil {
		t.Fatalf("first sample has rates: %+v", first)
	}
	if first.MemTotalBytes == 0 || first.MemUsedBytes > first.MemTotalBytes {
		t.Fatalf("memory figures: total %d used %d", first.MemTotalBytes, first.MemUsedBytes)
	}
	// Burn CPU for a few scheduler ticks of wall time so the counters
	// move: /proc/stat counts in 10 ms ticks, and a fixed loop finished
	// within one tick on a fast machine, leaving no rate to report.
	x := 0
	for start := time.Now(); time.Since(start) < 50*time.Millisecond; {
		x++
	}
	_ = x
	second, err := s.Sample("pc")
	if err != nil {
		t.Fatal(err)
	}
	if second.CPUPct == nil || *second.CPUPct < 0 || *second.CPUPct > 100 {
		t.Fatalf("second sample cpu = %v, want 0..100", second.CPUPct)
	}
	if runtime.GOOS == "linux" && (second.DiskReadBps == nil || second.NetRxBps == nil) {
		t.Fatalf("second sample lacks disk or network rates on linux: %+v", second)
	}
}
