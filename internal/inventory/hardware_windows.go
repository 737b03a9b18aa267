//go:build windows

package inventory

import (
	"cmp"
	"context"
	"slices"
	"strings"

	"golang.org/x/sys/windows/registry"

	"github.com/kanade-project/kanade/internal/hostinfo"
	"github.com/kanade-project/kanade/internal/wire"
)

// Hardware asks WMI, one query per class: Win32_ComputerSystem,
// Win32_ComputerSystemProduct, Win32_BIOS, Win32_Processor,
// Win32_PhysicalMemory and Win32_LogicalDisk (local fixed disks).
func (c *windowsCollector) Hardware(ctx context.Context) wire.Hardware {
	var h wire.Hardware
	notes := &h.Notes

	var cpuCount uint64
	if rows := c.wmiRows(ctx, notes, "Win32_ComputerSystem",
		[]string{"Manufacturer", "Model", "NumberOfProcessors", "TotalPhysicalMemory"}, ""); len(rows) > 0 {
		r := rows[0]
		h.Manufacturer = r.String("Manufacturer")
		h.Model = r.String("Model")
		cpuCount, _ = r.Uint("NumberOfProcessors")
		// The memory Windows can use: a little less than the DIMMs hold
		// (firmware and devices reserve some); Memory has the modules.
		h.RAMBytes, _ = r.Uint("TotalPhysicalMemory")
	}

	if rows := c.wmiRows(ctx, notes, "Win32_ComputerSystemProduct", []string{"IdentifyingNumber", "UUID"}, ""); len(rows) > 0 {
		h.Serial = rows[0].String("IdentifyingNumber")
		h.SMBIOSUUID = strings.ToUpper(rows[0].String("UUID"))
	}
	if isPlaceholderUUID(h.SMBIOSUUID) {
		h.SMBIOSUUID = ""
	}
	if h.SMBIOSUUID == "" && c.firmwareUUID != nil {
		if id := c.firmwareUUID(); id != "" {
			h.SMBIOSUUID = id
			*notes = append(*notes, "SMBIOS UUID read from the firmware table (WMI had none)")
		}
	}

	if rows := c.wmiRows(ctx, notes, "Win32_BIOS", []string{"Manufacturer", "SMBIOSBIOSVersion", "ReleaseDate"}, ""); len(rows) > 0 {
		r := rows[0]
		h.BIOS.Vendor = r.String("Manufacturer")
		h.BIOS.Version = r.String("SMBIOSBIOSVersion")
		if raw := r.String("ReleaseDate"); raw != "" {
			if h.BIOS.ReleaseDate = cimDate(raw); h.BIOS.ReleaseDate == "" {
				h.BIOS.ReleaseDate = raw
				*notes = append(*notes, "Win32_BIOS.ReleaseDate: not a CIM datetime; kept as written")
			}
		}
	}

	// One Win32_Processor instance per socket.
	if rows := c.wmiRows(ctx, notes, "Win32_Processor", []string{"Name", "NumberOfCores", "NumberOfLogicalProcessors"}, ""); len(rows) > 0 {
		h.CPU.Sockets = len(rows)
		var models []string
		for _, r := range rows {
			if m := r.String("Name"); m != "" && !slices.Contains(models, m) {
				models = append(models, m)
			}
			cores, _ := r.Uint("NumberOfCores")
			logical, _ := r.Uint("NumberOfLogicalProcessors")
			h.CPU.Cores += int(cores)
			h.CPU.LogicalProcessors += int(logical)
		}
		slices.Sort(models) // mixed sockets are rare; keep the order stable
		h.CPU.Model = strings.Join(models, " + ")
	} else if cpuCount > 0 {
		h.CPU.Sockets = int(cpuCount)
	}

	for _, r := range c.wmiRows(ctx, notes, "Win32_PhysicalMemory",
		[]string{"BankLabel", "DeviceLocator", "Capacity", "Manufacturer", "Speed"}, "") {
		d := wire.DIMM{Slot: dimmSlot(r.String("BankLabel"), r.String("DeviceLocator")), Manufacturer: r.String("Manufacturer")}
		d.CapacityB, _ = r.Uint("Capacity")
		speed, _ := r.Uint("Speed")
		d.SpeedMHz = int(speed)
		h.Memory = append(h.Memory, d)
	}
	slices.SortFunc(h.Memory, func(a, b wire.DIMM) int {
		return cmp.Or(strings.Compare(a.Slot, b.Slot), cmp.Compare(a.CapacityB, b.CapacityB),
			strings.Compare(a.Manufacturer, b.Manufacturer), cmp.Compare(a.SpeedMHz, b.SpeedMHz))
	})

	// DriveType 3: local fixed disks (no removable, network or optical).
	for _, r := range c.wmiRows(ctx, notes, "Win32_LogicalDisk", []string{"DeviceID", "FileSystem", "Size", "FreeSpace"}, "DriveType = 3") {
		d := wire.Disk{ID: r.String("DeviceID"), FileSystem: r.String("FileSystem")}
		if d.ID == "" {
			continue
		}
		d.Mount = d.ID + `\`
		d.SizeBytes, _ = r.Uint("Size")
		d.FreeBytes, _ = r.Uint("FreeSpace")
		h.Disks = append(h.Disks, d)
	}
	slices.SortFunc(h.Disks, func(a, b wire.Disk) int { return strings.Compare(a.ID, b.ID) })
	return h
}

// dimmSlot names a module's slot: "BANK 0/DIMM 0" when the firmware gives
// both labels, else the one it gives.
func dimmSlot(bank, locator string) string {
	switch {
	case bank == "" || bank == locator:
		return locator
	case locator == "":
		return bank
	}
	return bank + "/" + locator
}

// isPlaceholderUUID reports the values that firmware writes when it has no
// real UUID (hostinfo's SMBIOS parser rejects the same): all zeros, all
// ones and the AMI "To Be Filled By O.E.M." default.
func isPlaceholderUUID(u string) bool {
	switch strings.ToUpper(u) {
	case "", "00000000-0000-0000-0000-000000000000", "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
		"03000200-0400-0500-0006-000700080009":
		return true
	}
	return false
}

// smbiosFirmwareUUID returns the UUID that hostinfo's SMBIOS parser reads
// from GetSystemFirmwareTable('RSMB'), or "" when there is none.
// hostinfo.MachineID returns that UUID when the firmware has one and the
// installation's MachineGuid otherwise; the two are told apart by reading
// MachineGuid here (hostinfo does not export the parser itself).
func smbiosFirmwareUUID() string {
	id := hostinfo.MachineID()
	if id == "" {
		return ""
	}
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, `SOFTWARE\Microsoft\Cryptography`, registry.QUERY_VALUE|registry.WOW64_64KEY)
	if err == nil {
		guid := regString(k, "MachineGuid")
		k.Close()
		if strings.EqualFold(id, guid) {
			return ""
		}
	}
	if isPlaceholderUUID(id) {
		return ""
	}
	return id
}
