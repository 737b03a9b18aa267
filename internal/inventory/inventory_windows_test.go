//go:build windows

package inventory

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"

	"github.com/kanade-project/kanade/internal/inventory/wmi"
	"github.com/kanade-project/kanade/internal/wire"
)

// These tests read the live host: Windows, or Wine when run with
// GOOS=windows go test -exec test/wine/exec.sh.

// underWine: Wine's ntdll exports wine_get_version.
func underWine() bool {
	return windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil
}

func logJSON(t *testing.T, what string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %s", what, b)
}

func hasNote(notes []string, parts ...string) bool {
	return slices.ContainsFunc(notes, func(n string) bool {
		for _, p := range parts {
			if !strings.Contains(n, p) {
				return false
			}
		}
		return true
	})
}

func TestWindowsHardwareHasCPUMemoryAndADisk(t *testing.T) {
	h := New(Sources{}).Hardware(context.Background())
	logJSON(t, "hardware", h)
	if h.CPU.Model == "" || h.CPU.Cores <= 0 || h.CPU.Sockets <= 0 || h.CPU.LogicalProcessors < h.CPU.Cores {
		t.Errorf("CPU = %+v: want a model, cores > 0, sockets > 0, logical >= cores", h.CPU)
	}
	if h.RAMBytes == 0 {
		t.Error("RAMBytes = 0")
	}
	if h.Manufacturer == "" {
		t.Error("no system manufacturer")
	}
	if !slices.ContainsFunc(h.Disks, func(d wire.Disk) bool { return d.SizeBytes > 0 && d.FreeBytes <= d.SizeBytes }) {
		t.Errorf("no logical disk with a size: %+v", h.Disks)
	}
	if !slices.IsSortedFunc(h.Disks, func(a, b wire.Disk) int { return strings.Compare(a.ID, b.ID) }) {
		t.Errorf("disks not sorted by ID: %+v", h.Disks)
	}
}

func TestWindowsOSHasCaptionVersionAndTimes(t *testing.T) {
	o := New(Sources{}).OS(context.Background())
	logJSON(t, "os", o)
	if o.Name == "" || o.Version == "" || o.Build == "" {
		t.Errorf("name %q, version %q, build %q: want all set", o.Name, o.Version, o.Build)
	}
	if o.LastBoot == nil || o.InstallDate == nil {
		t.Fatalf("last boot %v, install date %v: want both", o.LastBoot, o.InstallDate)
	}
	if o.LastBoot.Location() != time.UTC || o.InstallDate.Location() != time.UTC {
		t.Errorf("times not in UTC: %v, %v", o.LastBoot, o.InstallDate)
	}
	if o.TimeZone == "" {
		t.Error("no time zone")
	}
	if o.Arch != "amd64" && o.Arch != "arm64" { // the test binary is amd64
		t.Errorf("Arch = %q", o.Arch)
	}
	if o.Domain == "" && o.Workgroup == "" {
		t.Error("neither a domain nor a workgroup")
	}
}

func TestWindowsNetworkListsInterfacesSortedWithValidAddresses(t *testing.T) {
	n := New(Sources{}).Network(context.Background())
	logJSON(t, "network", n)
	if len(n.Interfaces) == 0 || len(n.Notes) != 0 {
		t.Fatalf("interfaces %+v, notes %q: want interfaces and no notes", n.Interfaces, n.Notes)
	}
	if !slices.IsSortedFunc(n.Interfaces, func(a, b wire.Interface) int { return strings.Compare(a.Name, b.Name) }) {
		t.Error("interfaces not sorted by name")
	}
	addrs := 0
	for _, ifc := range n.Interfaces {
		for _, p := range slices.Concat(ifc.IPv4, ifc.IPv6) {
			if _, err := netip.ParsePrefix(p); err != nil {
				t.Errorf("%s: %v", ifc.Name, err)
			}
			addrs++
		}
	}
	if addrs == 0 {
		t.Error("no interface has an address")
	}
	for _, a := range slices.Concat(n.DefaultGateways, n.DNSServers) {
		if _, err := netip.ParseAddr(a); err != nil {
			t.Errorf("gateway/DNS %q: %v", a, err)
		}
	}
}

func TestWindowsSoftwareIsSortedAndDeterministic(t *testing.T) {
	// The host's views (Wine's are nearly empty) plus a fixture key, so
	// that there is something to sort.
	path := testUninstallKey(t, map[string]map[string]any{
		"z": {"DisplayName": "Zeta", "DisplayVersion": "1"},
		"a": {"DisplayName": "alpha", "DisplayVersion": "10"},
		"b": {"DisplayName": "Alpha", "DisplayVersion": "9"},
		"c": {"DisplayName": "Alpha", "DisplayVersion": "10", "Publisher": "P"},
	})
	c := newWindows()
	c.uninstall = append(c.uninstall, uninstallView{registry.CURRENT_USER, "HKCU", path, 0, "registry64"})
	s1 := c.Software(context.Background())
	s2 := c.Software(context.Background())
	logJSON(t, "software", s1)
	if !slices.IsSortedFunc(s1.Programs, func(a, b wire.Program) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.Version, b.Version), strings.Compare(a.Source, b.Source))
	}) {
		t.Error("programs not sorted by (name, version, source)")
	}
	if !slices.IsSortedFunc(s1.Hotfixes, func(a, b wire.Hotfix) int { return strings.Compare(a.ID, b.ID) }) {
		t.Error("hotfixes not sorted by ID")
	}
	if len(s1.Programs) < 4 {
		t.Errorf("%d programs, want at least the 4 fixture entries", len(s1.Programs))
	}
	for _, p := range s1.Programs {
		if p.Name == "" || (p.Source != "registry64" && p.Source != "registry32") {
			t.Errorf("program %+v", p)
		}
	}
	j1, _ := json.Marshal(s1)
	j2, _ := json.Marshal(s2)
	if !bytes.Equal(j1, j2) {
		t.Fatalf("two collections differ:\n%s\n%s", j1, j2)
	}
}

// testUninstallKey creates HKCU\Software\<unique>\Uninstall with the given
// entries (value name → string or uint32) and deletes it all afterwards.
func testUninstallKey(t *testing.T, entries map[string]map[string]any) string {
	t.Helper()
	base := fmt.Sprintf(`Software\KanadeInventoryTest-%d`, time.Now().UnixNano())
	path := base + `\Uninstall`
	k, _, err := registry.CreateKey(registry.CURRENT_USER, path, registry.ALL_ACCESS)
	if err != nil {
		t.Fatalf("creating %s: %v", path, err)
	}
	k.Close()
	t.Cleanup(func() {
		for name := range entries {
			registry.DeleteKey(registry.CURRENT_USER, path+`\`+name)
		}
		registry.DeleteKey(registry.CURRENT_USER, path)
		if err := registry.DeleteKey(registry.CURRENT_USER, base); err != nil {
			t.Errorf("removing the test key: %v", err)
		}
	})
	for name, values := range entries {
		ek, _, err := registry.CreateKey(registry.CURRENT_USER, path+`\`+name, registry.ALL_ACCESS)
		if err != nil {
			t.Fatal(err)
		}
		for vn, v := range values {
			switch v := v.(type) {
			case string:
				err = ek.SetStringValue(vn, v)
			case uint32:
				err = ek.SetDWordValue(vn, v)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		ek.Close()
	}
	return path
}

func TestWindowsUninstallSkipsHiddenEntriesAndSortsBothViews(t *testing.T) {
	path := testUninstallKey(t, map[string]map[string]any{
		"beta":      {"DisplayName": "Beta", "DisplayVersion": "2.0", "Publisher": "B Corp", "InstallDate": "20230115"},
		"alpha1":    {"DisplayName": "Alpha", "DisplayVersion": "1.0"},
		"alpha09":   {"DisplayName": "  Alpha  ", "DisplayVersion": "0.9", "InstallDate": "15.01.2023"},
		"noname":    {"DisplayVersion": "3.0", "Publisher": "Nobody"},
		"blank":     {"DisplayName": "   "},
		"component": {"DisplayName": "Hidden Part", "SystemComponent": uint32(1)},
		"shown":     {"DisplayName": "Shown", "SystemComponent": uint32(0)},
		"update":    {"DisplayName": "Update for Alpha", "ParentKeyName": "alpha1"},
		"{GUID-1}":  {"DisplayName": "Twice", "DisplayVersion": "1"},
		"{GUID-2}":  {"DisplayName": "Twice", "DisplayVersion": "1"},
	})
	c := newWindows()
	// The same key read as two "views" stands for the 64- and 32-bit ones;
	// a third view that does not exist must be a note, not a failure.
	c.uninstall = []uninstallView{
		{registry.CURRENT_USER, "HKCU", path, 0, "registry64"},
		{registry.CURRENT_USER, "HKCU", path, 0, "registry32"},
		{registry.CURRENT_USER, "HKCU", path + `\NoSuchKey`, 0, "registry32"},
	}
	s := c.Software(context.Background())

	var want []wire.Program
	for _, src := range []string{"registry32", "registry64"} {
		want = append(want,
			wire.Program{Name: "Alpha", Version: "0.9", Source: src, InstallDate: "15.01.2023"},
			wire.Program{Name: "Alpha", Version: "1.0", Source: src},
			wire.Program{Name: "Beta", Version: "2.0", Publisher: "B Corp", Source: src, InstallDate: "2023-01-15"},
			wire.Program{Name: "Shown", Source: src},
			wire.Program{Name: "Twice", Version: "1", Source: src},
		)
	}
	sortWinPrograms(want)
	if !slices.Equal(s.Programs, want) {
		got, _ := json.MarshalIndent(s.Programs, "", " ")
		exp, _ := json.MarshalIndent(want, "", " ")
		t.Errorf("programs:\n%s\nwant:\n%s", got, exp)
	}
	if !hasNote(s.Notes, `NoSuchKey (registry32): not present`) {
		t.Errorf("no note for the missing key: %q", s.Notes)
	}
}

func TestWindowsWMIClassTheHostLacksIsANote(t *testing.T) {
	c := newWindows()
	classes := []string{"Win32_KanadeNoSuchClass"}
	if underWine() {
		classes = append(classes, "Win32_TimeZone") // Wine 8 does not implement it
	}
	for _, class := range classes {
		var notes []string
		rows := c.wmiRows(context.Background(), &notes, class, []string{"Caption"}, "")
		if len(rows) != 0 || len(notes) != 1 || !hasNote(notes, class, "class not available on this host") {
			t.Errorf("%s: rows %v, notes %q; want no rows and one class note", class, rows, notes)
		}
	}
}

// Under Wine, Win32_PhysicalMemory has no Manufacturer or Speed and
// Win32_ComputerSystem no PartOfDomain: the rest of the section is still
// there, and each lack is a note. On Windows the same path is exercised
// with a fake WMI answer.
func TestWindowsFieldsTheHostLacksAreNotes(t *testing.T) {
	if underWine() {
		c := newWindows()
		h := c.Hardware(context.Background())
		for _, p := range []string{"Manufacturer", "Speed"} {
			if !hasNote(h.Notes, "Win32_PhysicalMemory."+p+": not provided") {
				t.Errorf("no note for Win32_PhysicalMemory.%s: %q", p, h.Notes)
			}
		}
		if len(h.Memory) == 0 || h.Memory[0].CapacityB == 0 || h.Memory[0].Slot == "" {
			t.Errorf("memory modules lost with the missing fields: %+v", h.Memory)
		}
		o := c.OS(context.Background())
		if !hasNote(o.Notes, "Win32_ComputerSystem.PartOfDomain: not provided") || (o.Domain == "" && o.Workgroup == "") {
			t.Errorf("domain: %q / %q, notes %q", o.Domain, o.Workgroup, o.Notes)
		}
		return
	}
	c := newWindows()
	c.query = func(_ context.Context, class string, props []string, _ string) (*wmi.Result, error) {
		if class != "Win32_PhysicalMemory" {
			return &wmi.Result{}, nil
		}
		return &wmi.Result{Rows: []wmi.Row{{"BankLabel": "BANK 0", "DeviceLocator": "DIMM 0", "Capacity": uint64(8 << 30)}},
			Missing: []string{"Manufacturer", "Speed"}}, nil
	}
	h := c.Hardware(context.Background())
	if want := []wire.DIMM{{Slot: "BANK 0/DIMM 0", CapacityB: 8 << 30}}; !slices.Equal(h.Memory, want) {
		t.Errorf("memory %+v, want %+v", h.Memory, want)
	}
	for _, p := range []string{"Manufacturer", "Speed"} {
		if !hasNote(h.Notes, "Win32_PhysicalMemory."+p+": not provided") {
			t.Errorf("no note for Win32_PhysicalMemory.%s: %q", p, h.Notes)
		}
	}
}

func TestWindowsWMITimeoutIsANote(t *testing.T) {
	c := newWindows()
	c.timeout = time.Nanosecond // every query runs out of time
	c.firmwareUUID = nil
	h := c.Hardware(context.Background())
	logJSON(t, "hardware with a 1ns WMI timeout", h)
	for _, class := range []string{"Win32_ComputerSystem", "Win32_ComputerSystemProduct", "Win32_BIOS",
		"Win32_Processor", "Win32_PhysicalMemory", "Win32_LogicalDisk"} {
		if !hasNote(h.Notes, class+": WMI did not answer within 1ns") {
			t.Errorf("no timeout note for %s: %q", class, h.Notes)
		}
	}
	if h.Manufacturer != "" || h.CPU != (wire.CPU{}) || h.Disks != nil {
		t.Errorf("fields filled despite the timeouts: %+v", h)
	}
	s := c.Software(context.Background())
	if !hasNote(s.Notes, "Win32_QuickFixEngineering: WMI did not answer within 1ns") {
		t.Errorf("no timeout note for the hotfixes: %q", s.Notes)
	}
}

// A query that really hangs (this fake WMI never answers Win32_BIOS) is
// cut at the collector's timeout, and the section goes on with the other
// classes (canned answers here, so the timeout can be short).
func TestWindowsHangingWMIQueryIsCutAtTheTimeout(t *testing.T) {
	c := newWindows()
	c.timeout = 50 * time.Millisecond
	c.query = func(ctx context.Context, class string, _ []string, _ string) (*wmi.Result, error) {
		switch class {
		case "Win32_BIOS":
			if _, ok := ctx.Deadline(); !ok {
				return nil, fmt.Errorf("no deadline on the query context")
			}
			<-ctx.Done()
			return nil, fmt.Errorf("%w (%v)", wmi.ErrTimeout, context.Cause(ctx))
		case "Win32_Processor":
			return &wmi.Result{Rows: []wmi.Row{{"Name": "Test CPU", "NumberOfCores": uint64(4), "NumberOfLogicalProcessors": uint64(8)}}}, nil
		}
		return &wmi.Result{}, nil
	}
	h := c.Hardware(context.Background())
	if h.BIOS != (wire.BIOS{}) || !hasNote(h.Notes, "Win32_BIOS: WMI did not answer within 50ms") {
		t.Errorf("BIOS %+v, notes %q: want empty with a timeout note", h.BIOS, h.Notes)
	}
	if want := (wire.CPU{Model: "Test CPU", Sockets: 1, Cores: 4, LogicalProcessors: 8}); h.CPU != want {
		t.Errorf("CPU after the hung query = %+v, want %+v", h.CPU, want)
	}
}

func TestWindowsCancelledCollectionIsNotes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c := New(Sources{})
	h, o, n, s := c.Hardware(ctx), c.OS(ctx), c.Network(ctx), c.Software(ctx)
	for what, notes := range map[string][]string{"hw": h.Notes, "os": o.Notes, "net": n.Notes, "sw": s.Notes} {
		if !hasNote(notes, "stopped early") {
			t.Errorf("%s: no note: %q", what, notes)
		}
	}
	if h.CPU.Model != "" || o.Name != "" || len(s.Programs) != 0 {
		t.Errorf("collected despite the cancelled context: %+v %+v", h, o)
	}
}
