//go:build windows

package hostinfo

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/windows"
)

func TestMachineIDWindows(t *testing.T) {
	fw, reg := firmwareUUID(), registryMachineGUID()
	t.Logf("SMBIOS UUID %q, MachineGuid %q", fw, reg)
	if reg == "" {
		t.Error("no MachineGuid in HKLM\\SOFTWARE\\Microsoft\\Cryptography; every Windows installation has one")
	}
	if fw != "" && len(fw) != 36 {
		t.Errorf("SMBIOS UUID %q is not 8-4-4-4-12", fw)
	}
	id := MachineID()
	want := fw
	if want == "" {
		want = reg
	}
	if id != want {
		t.Errorf("MachineID() = %q, want %q (SMBIOS first, then MachineGuid)", id, want)
	}
	if again := MachineID(); again != id {
		t.Errorf("MachineID() not stable: %q then %q", id, again)
	}
}

// Under Wine the SMBIOS table is synthesised from the Linux host: the UUID
// comes from /sys/class/dmi/id/product_uuid, or /etc/machine-id when there
// is no DMI. Wine stores it with the little-endian fields of SMBIOS 2.6+, so
// reading the same text back checks the parser's byte order end to end.
func TestFirmwareUUIDMatchesWineHost(t *testing.T) {
	if windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version").Find() != nil {
		t.Skip("not running under Wine")
	}
	var host string
	if b, err := os.ReadFile(`Z:\sys\class\dmi\id\product_uuid`); err == nil {
		host = strings.TrimSpace(string(b))
	} else if b, err := os.ReadFile(`Z:\etc\machine-id`); err == nil {
		if id := strings.TrimSpace(string(b)); len(id) == 32 {
			host = id[0:8] + "-" + id[8:12] + "-" + id[12:16] + "-" + id[16:20] + "-" + id[20:32]
		}
	}
	if host == "" {
		t.Skip("the Linux host exposes neither product_uuid nor machine-id")
	}
	if got := firmwareUUID(); !strings.EqualFold(got, host) {
		t.Errorf("firmwareUUID() = %q, want the host's %q", got, host)
	}
}
