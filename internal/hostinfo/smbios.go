package hostinfo

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// The SMBIOS parser has no build tag so that it is tested on every
// platform; only Windows feeds it (GetSystemFirmwareTable('RSMB')).

const (
	smbiosTypeSystem = 1   // System Information, which holds the UUID
	smbiosTypeEnd    = 127 // End-of-Table
	rawSMBIOSHeader  = 8   // RawSMBIOSData before the structure table
	systemUUIDOffset = 8   // of the UUID within a type 1 structure
	systemUUIDEnd    = systemUUIDOffset + 16
)

// placeholderUUIDs are values that firmware reports when it has no real
// UUID, or that many boards ship with, so they would make thousands of PCs
// one device: all zeros ("not present"), all ones ("not set"), and the
// AMI "To Be Filled By O.E.M." default.
var placeholderUUIDs = [...][16]byte{
	{},
	{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	// 03000200-0400-0500-0006-000700080009 as stored (little-endian fields).
	{0x00, 0x02, 0x00, 0x03, 0x00, 0x04, 0x00, 0x05, 0x00, 0x06, 0x00, 0x07, 0x00, 0x08, 0x00, 0x09},
}

// rawSMBIOSUUID returns the system UUID from the buffer that
// GetSystemFirmwareTable('RSMB', 0) fills: a RawSMBIOSData header (calling
// method, major and minor version, DMI revision, table length) followed by
// the SMBIOS structure table. It returns "" when there is no usable UUID.
func rawSMBIOSUUID(raw []byte) string {
	if len(raw) < rawSMBIOSHeader {
		return ""
	}
	major, minor := raw[1], raw[2]
	n := binary.LittleEndian.Uint32(raw[4:8])
	table := raw[rawSMBIOSHeader:]
	if uint64(n) < uint64(len(table)) {
		table = table[:n]
	}
	return smbiosTableUUID(table, major, minor)
}

// smbiosTableUUID walks an SMBIOS structure table to the first System
// Information structure and formats its UUID as Windows tools show it
// (upper-case 8-4-4-4-12).
//
// SMBIOS 2.6 and later store the first three UUID fields little-endian (as
// a Windows GUID); earlier versions left the order unspecified and in
// practice stored them as printed, so they are kept as stored, the way
// dmidecode reads them.
func smbiosTableUUID(table []byte, major, minor byte) string {
	for len(table) >= 4 {
		typ, length := table[0], int(table[1])
		if length < 4 || length > len(table) {
			return "" // malformed: a header must at least cover itself
		}
		if typ == smbiosTypeEnd {
			return ""
		}
		if typ == smbiosTypeSystem {
			if length < systemUUIDEnd {
				return "" // SMBIOS 2.0 System Information has no UUID
			}
			var u [16]byte
			copy(u[:], table[systemUUIDOffset:systemUUIDEnd])
			for _, p := range placeholderUUIDs {
				if u == p {
					return ""
				}
			}
			if major > 2 || (major == 2 && minor >= 6) {
				u[0], u[1], u[2], u[3] = u[3], u[2], u[1], u[0]
				u[4], u[5] = u[5], u[4]
				u[6], u[7] = u[7], u[6]
			}
			return fmt.Sprintf("%X-%X-%X-%X-%X", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
		}
		// The formatted area is followed by its strings, each NUL-ended,
		// the set ended by one more NUL (two NULs when there are none).
		end := bytes.Index(table[length:], []byte{0, 0})
		if end < 0 {
			return ""
		}
		table = table[length+end+2:]
	}
	return ""
}
