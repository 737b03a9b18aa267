package hostinfo

import (
	"strings"
	"unsafe"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"
)

// machineID prefers the SMBIOS system UUID: it is burnt into the firmware,
// so it survives an OS reinstall or a re-imaged disk, and it is what
// Win32_ComputerSystemProduct and asset databases show. Virtual machines
// and cheap boards may have none (or a placeholder); then the MachineGuid
// that Windows setup generates identifies the installation.
func machineID() string {
	if id := firmwareUUID(); id != "" {
		return id
	}
	return registryMachineGUID()
}

// x/sys/windows has no GetSystemFirmwareTable.
var procGetSystemFirmwareTable = windows.NewLazySystemDLL("kernel32.dll").NewProc("GetSystemFirmwareTable")

// rsmb is the 'RSMB' provider signature (raw SMBIOS), as a big-endian
// four-character code.
const rsmb = 'R'<<24 | 'S'<<16 | 'M'<<8 | 'B'

func firmwareUUID() string {
	if procGetSystemFirmwareTable.Find() != nil {
		return ""
	}
	// The first call asks for the size. The table does not change while
	// the machine runs, but a retry costs nothing if the size moved.
	size, _, _ := procGetSystemFirmwareTable.Call(rsmb, 0, 0, 0)
	for range 3 {
		if size == 0 || size > 1<<20 {
			return ""
		}
		buf := make([]byte, size)
		n, _, _ := procGetSystemFirmwareTable.Call(rsmb, 0, uintptr(unsafe.Pointer(&buf[0])), size)
		if n == 0 {
			return ""
		}
		if n <= size {
			return rawSMBIOSUUID(buf[:n])
		}
		size = n
	}
	return ""
}

func registryMachineGUID() string {
	// WOW64_64KEY: a 32-bit build on 64-bit Windows would otherwise read
	// the WOW6432Node view, which has no MachineGuid.
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, `SOFTWARE\Microsoft\Cryptography`, registry.QUERY_VALUE|registry.WOW64_64KEY)
	if err != nil {
		return ""
	}
	defer k.Close()
	v, _, err := k.GetStringValue("MachineGuid")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(v)
}
