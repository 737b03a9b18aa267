package hostinfo

import (
	"encoding/binary"
	"testing"
)

// structure builds one SMBIOS structure: header, formatted area (after the
// header) and strings.
func structure(typ byte, handle uint16, formatted []byte, strs ...string) []byte {
	b := []byte{typ, byte(4 + len(formatted)), byte(handle), byte(handle >> 8)}
	b = append(b, formatted...)
	if len(strs) == 0 {
		return append(b, 0, 0)
	}
	for _, s := range strs {
		b = append(append(b, s...), 0)
	}
	return append(b, 0)
}

// systemInfo builds a type 1 structure (SMBIOS 2.4 layout, 0x1B bytes) with
// the given UUID bytes as stored.
func systemInfo(uuid [16]byte) []byte {
	f := []byte{1, 2, 3, 4} // manufacturer, product, version, serial string numbers
	f = append(f, uuid[:]...)
	f = append(f, 6, 5, 6) // wake-up type, SKU, family
	return structure(1, 0x0100, f, "Maker", "Model", "1.0", "SN123", "SKU", "Family")
}

// raw prepends the RawSMBIOSData header GetSystemFirmwareTable returns.
func raw(major, minor byte, table ...[]byte) []byte {
	var body []byte
	for _, s := range table {
		body = append(body, s...)
	}
	h := []byte{0, major, minor, 0, 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(h[4:], uint32(len(body)))
	return append(h, body...)
}

var (
	// Stored bytes of 4C4C4544-0042-3510-8052-B4C04F4D4B32 under SMBIOS 2.6+.
	dellUUID = [16]byte{0x44, 0x45, 0x4c, 0x4c, 0x42, 0x00, 0x10, 0x35, 0x80, 0x52, 0xb4, 0xc0, 0x4f, 0x4d, 0x4b, 0x32}
	bios     = structure(0, 0x0000, []byte{1, 2, 0, 0xf0, 3, 0xff}, "Vendor", "1.2.3", "01/01/2020")
	end      = structure(127, 0xfeff, nil)
)

func TestRawSMBIOSUUID(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  []byte
		want string
	}{
		{"smbios 3.0 little-endian fields", raw(3, 0, bios, systemInfo(dellUUID), end), "4C4C4544-0042-3510-8052-B4C04F4D4B32"},
		{"smbios 2.6 little-endian fields", raw(2, 6, systemInfo(dellUUID), end), "4C4C4544-0042-3510-8052-B4C04F4D4B32"},
		{"smbios 2.5 bytes as stored", raw(2, 5, systemInfo(dellUUID), end), "44454C4C-4200-1035-8052-B4C04F4D4B32"},
		{"structure without strings", raw(3, 2, structure(32, 0x20, []byte{0, 0, 0, 0, 0, 0, 0}), systemInfo(dellUUID), end), "4C4C4544-0042-3510-8052-B4C04F4D4B32"},
		{"first type 1 wins", raw(3, 0, systemInfo(dellUUID), systemInfo([16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}), end), "4C4C4544-0042-3510-8052-B4C04F4D4B32"},
		{"all zeros means not present", raw(3, 0, bios, systemInfo([16]byte{}), end), ""},
		{"all ones means not set", raw(3, 0, systemInfo([16]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}), end), ""},
		{"oem placeholder", raw(3, 0, systemInfo([16]byte{0x00, 0x02, 0x00, 0x03, 0x00, 0x04, 0x00, 0x05, 0x00, 0x06, 0x00, 0x07, 0x00, 0x08, 0x00, 0x09})), ""},
		{"smbios 2.0 type 1 has no uuid", raw(2, 0, structure(1, 0x100, []byte{1, 2, 3, 4}, "a", "b", "c", "d"), end), ""},
		{"no type 1", raw(3, 0, bios, end), ""},
		{"type 1 after end of table", raw(3, 0, bios, end, systemInfo(dellUUID)), ""},
		{"truncated uuid", raw(3, 0, bios, systemInfo(dellUUID)[:12]), ""},
		{"header length below 4", raw(3, 0, []byte{1, 2, 0, 0}, systemInfo(dellUUID)), ""},
		{"unterminated strings", raw(3, 0, []byte{0, 5, 0, 0, 1, 'a', 'b'}, systemInfo(dellUUID)), ""},
		{"table length limits the walk", func() []byte {
			b := raw(3, 0, bios)
			return append(b, systemInfo(dellUUID)...) // beyond the declared length
		}(), ""},
		{"empty", nil, ""},
		{"header only", raw(3, 0), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := rawSMBIOSUUID(tc.raw); got != tc.want {
				t.Errorf("rawSMBIOSUUID = %q, want %q", got, tc.want)
			}
		})
	}
}

func FuzzRawSMBIOSUUID(f *testing.F) {
	f.Add(raw(3, 0, bios, systemInfo(dellUUID), end))
	f.Add(raw(2, 5, systemInfo(dellUUID)))
	f.Fuzz(func(t *testing.T, b []byte) {
		got := rawSMBIOSUUID(b) // must not panic
		if got != "" && len(got) != 36 {
			t.Errorf("malformed UUID %q", got)
		}
	})
}
