//go:build windows

package procstat

import (
	"testing"
	"time"
)

func TestSelfWindows(t *testing.T) {
	rss, cpu, err := self()
	if err != nil {
		t.Fatal(err)
	}
	if rss == 0 {
		t.Error("working set is 0 for a running process")
	}
	if cpu < 0 {
		t.Errorf("cpu time %s is negative", cpu)
	}
	// Burn a little CPU: the counter must not go backwards, and after a
	// busy 200 ms it should have moved (the clock ticks every ~16 ms).
	deadline := time.Now().Add(200 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = x * x
	}
	_, cpu2, err := self()
	if err != nil {
		t.Fatal(err)
	}
	if cpu2 < cpu {
		t.Errorf("cpu time went backwards: %s then %s", cpu, cpu2)
	}
	if cpu2 == 0 {
		t.Error("cpu time still 0 after 200 ms of busy work")
	}
	t.Logf("working set %d bytes, cpu %s", rss, cpu2)
}

func TestSamplerWindows(t *testing.T) {
	var s Sampler
	rss, pct, err := s.Sample()
	if err != nil || rss == 0 || pct != nil {
		t.Fatalf("first sample: rss=%d pct=%v err=%v, want rss>0 and no percentage", rss, pct, err)
	}
	time.Sleep(50 * time.Millisecond)
	_, pct, err = s.Sample()
	if err != nil || pct == nil || *pct < 0 {
		t.Fatalf("second sample: pct=%v err=%v, want a percentage >= 0", pct, err)
	}
}
