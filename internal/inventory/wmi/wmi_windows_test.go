//go:build windows

package wmi

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// These tests run against the host's WMI: on Windows, or as Windows
// binaries under Wine (test/wine/exec.sh), whose wbemprox provides the
// classes used here.

func query(t *testing.T, class string, props []string, where string) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := Query(ctx, class, props, where)
	if err != nil {
		t.Fatalf("Query(%s): %v", class, err)
	}
	return res
}

// The acceptance check for the Wine issue: the native route returns the
// values (the scripting route of yusufpapurcu/wmi returns every field
// empty under Wine 8; see the package comment).
func TestQueryReturnsRealValuesThroughTheNativeInterfaces(t *testing.T) {
	os := query(t, "Win32_OperatingSystem", []string{"Caption", "Version", "BuildNumber", "LastBootUpTime"}, "")
	if len(os.Rows) != 1 {
		t.Fatalf("Win32_OperatingSystem: %d rows, want 1", len(os.Rows))
	}
	for _, p := range []string{"Caption", "Version", "BuildNumber", "LastBootUpTime"} {
		if os.Rows[0].String(p) == "" {
			t.Errorf("Win32_OperatingSystem.%s is empty: %#v", p, os.Rows[0])
		}
	}
	t.Logf("Win32_OperatingSystem: %#v", os.Rows[0])

	cpu := query(t, "Win32_Processor", []string{"Name", "NumberOfCores"}, "")
	if len(cpu.Rows) == 0 {
		t.Fatal("Win32_Processor: no rows")
	}
	// CIM_UINT32 arrives as VT_I4 and is decoded as unsigned.
	if cores, ok := cpu.Rows[0].Uint("NumberOfCores"); !ok || cores == 0 || cpu.Rows[0].String("Name") == "" {
		t.Errorf("Win32_Processor: %#v", cpu.Rows[0])
	}
	if _, isUint := cpu.Rows[0]["NumberOfCores"].(uint64); !isUint {
		t.Errorf("NumberOfCores decoded as %T, want uint64", cpu.Rows[0]["NumberOfCores"])
	}

	disks := query(t, "Win32_LogicalDisk", []string{"DeviceID", "Size"}, "DriveType = 3")
	if len(disks.Rows) == 0 {
		t.Fatal("Win32_LogicalDisk WHERE DriveType = 3: no rows")
	}
	// CIM_UINT64 arrives as a BSTR and is parsed back.
	size, isUint := disks.Rows[0]["Size"].(uint64)
	if !isUint || size == 0 || disks.Rows[0].String("DeviceID") == "" {
		t.Errorf("Win32_LogicalDisk: %#v (Size %T)", disks.Rows[0], disks.Rows[0]["Size"])
	}
}

func TestQueryListsAMissingPropertyAndStillAnswersTheOthers(t *testing.T) {
	res := query(t, "Win32_OperatingSystem", []string{"Caption", "KanadeNoSuchProperty", "Version"}, "")
	if !slices.Equal(res.Missing, []string{"KanadeNoSuchProperty"}) {
		t.Errorf("Missing = %q, want [KanadeNoSuchProperty]", res.Missing)
	}
	if len(res.Rows) != 1 {
		t.Fatalf("%d rows, want 1", len(res.Rows))
	}
	r := res.Rows[0]
	if r.String("Caption") == "" || r.String("Version") == "" {
		t.Errorf("the properties that exist were not read: %#v", r)
	}
	if _, present := r["KanadeNoSuchProperty"]; present {
		t.Errorf("the missing property is in the row: %#v", r)
	}
}

func TestQueryOfAMissingClassIsErrNoClass(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := Query(ctx, "Win32_KanadeNoSuchClass", []string{"Name"}, "")
	if !errors.Is(err, ErrNoClass) {
		t.Fatalf("Query = %+v, %v; want ErrNoClass", res, err)
	}
}

// blockQueries makes every query stop on its goroutine after COM is
// initialised until release is closed; entered receives one value per
// query that got there and exited one per goroutine that ended.
func blockQueries(t *testing.T) (entered, exited chan struct{}, release chan struct{}) {
	t.Helper()
	entered = make(chan struct{}, MaxInFlight+1)
	exited = make(chan struct{}, MaxInFlight+1)
	release = make(chan struct{})
	testHook = func(stage string) {
		switch stage {
		case "com":
			entered <- struct{}{}
			<-release
		case "exit":
			exited <- struct{}{}
		}
	}
	t.Cleanup(func() { testHook = nil })
	return entered, exited, release
}

func TestQueryTimeoutReturnsAndTheAbandonedQueryFinishesLater(t *testing.T) {
	_, exited, release := blockQueries(t)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	res, err := Query(ctx, "Win32_OperatingSystem", []string{"Caption"}, "")
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Query = %+v, %v; want ErrTimeout", res, err)
	}
	// The stuck query still holds its slot: that is the bound.
	if n := len(slots); n != 1 {
		t.Fatalf("%d slots in use after the timeout, want 1 (the abandoned query)", n)
	}
	// Once WMI "answers", the abandoned goroutine ends and frees its slot.
	close(release)
	<-exited
	if n := len(slots); n != 0 {
		t.Fatalf("%d slots in use after the abandoned query ended, want 0", n)
	}
}

func TestQueryIsRefusedWhileAbandonedQueriesFillEverySlot(t *testing.T) {
	entered, exited, release := blockQueries(t)

	for range MaxInFlight {
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-entered; cancel() }() // give up once it is stuck
		if _, err := Query(ctx, "Win32_OperatingSystem", []string{"Caption"}, ""); !errors.Is(err, ErrTimeout) {
			t.Fatalf("stuck query: %v, want ErrTimeout", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := Query(ctx, "Win32_OperatingSystem", []string{"Caption"}, ""); !errors.Is(err, ErrBusy) {
		t.Fatalf("query with every slot held by an abandoned one: %v, want ErrBusy", err)
	}
	if n := len(entered); n != 0 {
		t.Fatalf("the refused query started a goroutine (%d entered)", n)
	}

	close(release)
	for range MaxInFlight {
		<-exited
	}
	testHook = nil
	if res := query(t, "Win32_OperatingSystem", []string{"Caption"}, ""); len(res.Rows) != 1 || res.Rows[0].String("Caption") == "" {
		t.Fatalf("query after the slots were freed: %+v", res)
	}
}

func TestQueryWithAnExpiredContextStartsNothing(t *testing.T) {
	// An abandoned query of an earlier test gives its slot back on its own
	// goroutine; wait for that so the count below is this test's alone.
	deadline := time.Now().Add(10 * time.Second)
	for len(slots) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d slots still held by earlier queries", len(slots))
		}
		time.Sleep(10 * time.Millisecond)
	}
	entered, _, _ := blockQueries(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Query(ctx, "Win32_OperatingSystem", []string{"Caption"}, ""); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Query = %v, want ErrTimeout", err)
	}
	if len(entered) != 0 || len(slots) != 0 {
		t.Fatalf("a query started: %d entered, %d slots", len(entered), len(slots))
	}
}
