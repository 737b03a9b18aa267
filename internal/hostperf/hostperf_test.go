package hostperf

import (
	"runtime"
	"testing"
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
	// Burn a little CPU so the counters move.
	x := 0
	for i := range 20_000_000 {
		x += i
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
