package hostperf

import (
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

var (
	kernel32                 = windows.NewLazySystemDLL("kernel32.dll")
	procGetSystemTimes       = kernel32.NewProc("GetSystemTimes")
	procGlobalMemoryStatusEx = kernel32.NewProc("GlobalMemoryStatusEx")
)

type memoryStatusEx struct {
	Length               uint32
	MemoryLoad           uint32
	TotalPhys            uint64
	AvailPhys            uint64
	TotalPageFile        uint64
	AvailPageFile        uint64
	TotalVirtual         uint64
	AvailVirtual         uint64
	AvailExtendedVirtual uint64
}

func ft(f windows.Filetime) float64 {
	return float64(uint64(f.HighDateTime)<<32 | uint64(f.LowDateTime))
}

// read uses GetSystemTimes and GlobalMemoryStatusEx. Disk and network
// throughput need PDH or per-interface tables; they are left nil on
// Windows for now.
func read() (counters, error) {
	c := counters{at: time.Now()}
	var idle, kernel, user windows.Filetime
	if r, _, err := procGetSystemTimes.Call(uintptr(unsafe.Pointer(&idle)), uintptr(unsafe.Pointer(&kernel)), uintptr(unsafe.Pointer(&user))); r == 0 {
		return c, fmt.Errorf("hostperf: GetSystemTimes: %w", err)
	}
	// Kernel time includes idle time.
	c.cpuTotal = ft(kernel) + ft(user)
	c.cpuBusy = c.cpuTotal - ft(idle)
	m := memoryStatusEx{Length: uint32(unsafe.Sizeof(memoryStatusEx{}))}
	if r, _, err := procGlobalMemoryStatusEx.Call(uintptr(unsafe.Pointer(&m))); r == 0 {
		return c, fmt.Errorf("hostperf: GlobalMemoryStatusEx: %w", err)
	}
	c.memTotal, c.memUsed = m.TotalPhys, m.TotalPhys-m.AvailPhys
	if m.TotalPageFile > m.TotalPhys {
		c.swapTotal = m.TotalPageFile - m.TotalPhys
		used := (m.TotalPageFile - m.AvailPageFile)
		if used > c.memUsed {
			c.swapUsed = min(used-c.memUsed, c.swapTotal)
		}
	}
	return c, nil
}
