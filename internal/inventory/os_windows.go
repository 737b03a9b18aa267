//go:build windows

package inventory

import (
	"context"
	"fmt"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"

	"github.com/kanade-project/kanade/internal/wire"
)

// OS asks WMI for Win32_OperatingSystem and the domain membership
// (Win32_ComputerSystem), and reads the update revision and the time zone
// from the registry.
func (c *windowsCollector) OS(ctx context.Context) wire.OSInfo {
	o := wire.OSInfo{Arch: nativeArch()}
	notes := &o.Notes

	if rows := c.wmiRows(ctx, notes, "Win32_OperatingSystem",
		[]string{"Caption", "Version", "BuildNumber", "InstallDate", "LastBootUpTime"}, ""); len(rows) > 0 {
		r := rows[0]
		o.Name = r.String("Caption")
		o.Version = r.String("Version")
		o.Build = r.String("BuildNumber")
		o.InstallDate = cimInstant(notes, "Win32_OperatingSystem.InstallDate", r.String("InstallDate"))
		o.LastBoot = cimInstant(notes, "Win32_OperatingSystem.LastBootUpTime", r.String("LastBootUpTime"))
	}
	// The update build revision is what tells two machines of the same
	// build apart by their cumulative update: Build 19045 → 19045.4651,
	// as winver shows it.
	if o.Build != "" {
		if ubr, ok := currentVersionUBR(); ok {
			o.Build += "." + strconv.FormatUint(ubr, 10)
		}
	}

	o.TimeZone = timeZoneName(notes)
	c.domain(ctx, &o)
	return o
}

// cimInstant parses a CIM_DATETIME into a UTC instant; an empty value is
// nil, an unparsable one nil with a note.
func cimInstant(notes *[]string, what, raw string) *time.Time {
	if raw == "" {
		return nil
	}
	t, err := parseCIMDateTime(raw)
	if err != nil {
		*notes = append(*notes, what+": "+err.Error())
		return nil
	}
	t = t.UTC()
	return &t
}

func currentVersionUBR() (uint64, bool) {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, `SOFTWARE\Microsoft\Windows NT\CurrentVersion`, registry.QUERY_VALUE|registry.WOW64_64KEY)
	if err != nil {
		return 0, false
	}
	defer k.Close()
	v, _, err := k.GetIntegerValue("UBR")
	return v, err == nil
}

// timeZoneName returns the Windows time zone ID (the registry key name
// under ...\Time Zones, e.g. "Tokyo Standard Time", the same in every
// language), falling back to the standard name GetTimeZoneInformation
// gives. WMI's Win32_TimeZone is not used: it only repeats these, and
// Wine does not implement it.
func timeZoneName(notes *[]string) string {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, `SYSTEM\CurrentControlSet\Control\TimeZoneInformation`, registry.QUERY_VALUE)
	if err == nil {
		name := regString(k, "TimeZoneKeyName")
		k.Close()
		if name != "" {
			return name
		}
	}
	var tzi windows.Timezoneinformation
	if _, err := windows.GetTimeZoneInformation(&tzi); err != nil {
		*notes = append(*notes, "time zone: "+err.Error())
		return ""
	}
	return windows.UTF16ToString(tzi.StandardName[:])
}

// domain fills Domain (an Active Directory domain, when joined) or
// Workgroup. Win32_ComputerSystem.Domain holds either, PartOfDomain says
// which. Without PartOfDomain (Wine lacks it) NetGetJoinInformation tells.
func (c *windowsCollector) domain(ctx context.Context, o *wire.OSInfo) {
	rows := c.wmiRows(ctx, &o.Notes, "Win32_ComputerSystem", []string{"Domain", "PartOfDomain", "Workgroup"}, "")
	if len(rows) > 0 {
		r := rows[0]
		if joined, ok := r.Bool("PartOfDomain"); ok {
			if joined {
				o.Domain = r.String("Domain")
			} else if o.Workgroup = r.String("Workgroup"); o.Workgroup == "" {
				o.Workgroup = r.String("Domain")
			}
			return
		}
	}
	name, status, err := netJoinInformation()
	if err != nil {
		o.Notes = append(o.Notes, "domain membership: "+err.Error())
		return
	}
	switch status {
	case windows.NetSetupDomainName:
		o.Domain = name
	case windows.NetSetupWorkgroupName:
		o.Workgroup = name
	}
	if len(rows) > 0 {
		o.Notes = append(o.Notes, "domain membership from NetGetJoinInformation (WMI lacks PartOfDomain)")
	}
}

func netJoinInformation() (name string, status uint32, err error) {
	var buf *uint16
	if err := windows.NetGetJoinInformation(nil, &buf, &status); err != nil {
		return "", 0, fmt.Errorf("NetGetJoinInformation: %w", err)
	}
	defer windows.NetApiBufferFree((*byte)(unsafe.Pointer(buf)))
	return windows.UTF16PtrToString(buf), status, nil
}
