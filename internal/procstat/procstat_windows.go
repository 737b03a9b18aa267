package procstat

import (
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// x/sys/windows has no GetProcessMemoryInfo. Since Windows 7 kernel32
// exports it as K32GetProcessMemoryInfo, which saves loading psapi.dll into
// a service that wants to stay small.
var procGetProcessMemoryInfo = windows.NewLazySystemDLL("kernel32.dll").NewProc("K32GetProcessMemoryInfo")

// processMemoryCounters is PROCESS_MEMORY_COUNTERS.
type processMemoryCounters struct {
	CB                         uint32
	PageFaultCount             uint32
	PeakWorkingSetSize         uintptr
	WorkingSetSize             uintptr
	QuotaPeakPagedPoolUsage    uintptr
	QuotaPagedPoolUsage        uintptr
	QuotaPeakNonPagedPoolUsage uintptr
	QuotaNonPagedPoolUsage     uintptr
	PagefileUsage              uintptr
	PeakPagefileUsage          uintptr
}

// self reports the working set (the Windows counterpart of RSS, what Task
// Manager shows as memory) and the user plus kernel CPU time of the agent.
func self() (uint64, time.Duration, error) {
	proc := windows.CurrentProcess()
	if err := procGetProcessMemoryInfo.Find(); err != nil {
		return 0, 0, fmt.Errorf("procstat: %w", err)
	}
	pmc := processMemoryCounters{CB: uint32(unsafe.Sizeof(processMemoryCounters{}))}
	if ok, _, err := procGetProcessMemoryInfo.Call(uintptr(proc), uintptr(unsafe.Pointer(&pmc)), uintptr(pmc.CB)); ok == 0 {
		return 0, 0, fmt.Errorf("procstat: GetProcessMemoryInfo: %w", err)
	}
	var creation, exit, kernel, user windows.Filetime
	if err := windows.GetProcessTimes(proc, &creation, &exit, &kernel, &user); err != nil {
		return 0, 0, fmt.Errorf("procstat: GetProcessTimes: %w", err)
	}
	return uint64(pmc.WorkingSetSize), filetimeDuration(kernel) + filetimeDuration(user), nil
}

// filetimeDuration reads a FILETIME that holds an amount of time (in 100 ns
// units), not a date; Filetime.Nanoseconds would subtract the 1601 epoch.
func filetimeDuration(ft windows.Filetime) time.Duration {
	return time.Duration(uint64(ft.HighDateTime)<<32|uint64(ft.LowDateTime)) * 100
}
