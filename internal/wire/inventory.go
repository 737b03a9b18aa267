package wire

import (
	"encoding/json"
	"time"
)

// Inventory sections, the last token of inventory.<pc>.<section>.
const (
	SectionHardware = "hw"
	SectionOS       = "os"
	SectionNetwork  = "net"
	SectionSoftware = "sw"
)

// Sections lists every inventory section.
func Sections() []string {
	return []string{SectionHardware, SectionOS, SectionNetwork, SectionSoftware}
}

// InventoryMessage is published on inventory.<pc>.<section>. A section
// whose content hash did not change since the last acknowledged publish is
// sent as a small marker (Unchanged, no Data) so freshness stays visible.
type InventoryMessage struct {
	PCID        string    `json:"pc_id"`
	Section     string    `json:"section"`
	CollectedAt time.Time `json:"collected_at"`
	// Hash is the SHA-256 of Data's canonical JSON.
	Hash      string          `json:"hash"`
	Unchanged bool            `json:"unchanged,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
}

// Hardware is the hw section.
type Hardware struct {
	Manufacturer string `json:"manufacturer,omitempty"`
	Model        string `json:"model,omitempty"`
	Serial       string `json:"serial,omitempty"`
	// SMBIOSUUID is the system UUID (the heartbeat's machine_id on Windows).
	SMBIOSUUID string   `json:"smbios_uuid,omitempty"`
	CPU        CPU      `json:"cpu"`
	RAMBytes   uint64   `json:"ram_bytes,omitempty"`
	Memory     []DIMM   `json:"memory,omitempty"`
	Disks      []Disk   `json:"disks,omitempty"`
	BIOS       BIOS     `json:"bios"`
	Notes      []string `json:"notes,omitempty"`
}

// CPU describes the processors.
type CPU struct {
	Model             string `json:"model,omitempty"`
	Sockets           int    `json:"sockets,omitempty"`
	Cores             int    `json:"cores,omitempty"`
	LogicalProcessors int    `json:"logical_processors,omitempty"`
}

// DIMM is one memory module.
type DIMM struct {
	Slot         string `json:"slot,omitempty"`
	CapacityB    uint64 `json:"capacity_bytes,omitempty"`
	Manufacturer string `json:"manufacturer,omitempty"`
	SpeedMHz     int    `json:"speed_mhz,omitempty"`
}

// Disk is one local volume.
type Disk struct {
	// ID is the drive letter (C:) or the device (/dev/sda1).
	ID         string `json:"id"`
	Mount      string `json:"mount,omitempty"`
	FileSystem string `json:"filesystem,omitempty"`
	SizeBytes  uint64 `json:"size_bytes"`
	FreeBytes  uint64 `json:"free_bytes"`
}

// BIOS describes the firmware.
type BIOS struct {
	Vendor      string `json:"vendor,omitempty"`
	Version     string `json:"version,omitempty"`
	ReleaseDate string `json:"release_date,omitempty"`
}

// OSInfo is the os section.
type OSInfo struct {
	Name        string     `json:"name,omitempty"`
	Version     string     `json:"version,omitempty"`
	Build       string     `json:"build,omitempty"`
	Kernel      string     `json:"kernel,omitempty"`
	Arch        string     `json:"arch,omitempty"`
	InstallDate *time.Time `json:"install_date,omitempty"`
	LastBoot    *time.Time `json:"last_boot,omitempty"`
	TimeZone    string     `json:"time_zone,omitempty"`
	Domain      string     `json:"domain,omitempty"`
	Workgroup   string     `json:"workgroup,omitempty"`
	Notes       []string   `json:"notes,omitempty"`
}

// Network is the net section.
type Network struct {
	Interfaces      []Interface `json:"interfaces,omitempty"`
	DefaultGateways []string    `json:"default_gateways,omitempty"`
	DNSServers      []string    `json:"dns_servers,omitempty"`
	Notes           []string    `json:"notes,omitempty"`
}

// Interface is one network interface.
type Interface struct {
	Name string   `json:"name"`
	MAC  string   `json:"mac,omitempty"`
	Up   bool     `json:"up"`
	IPv4 []string `json:"ipv4,omitempty"`
	IPv6 []string `json:"ipv6,omitempty"`
}

// Software is the sw section, sorted deterministically.
type Software struct {
	Programs []Program `json:"programs,omitempty"`
	Hotfixes []Hotfix  `json:"hotfixes,omitempty"`
	Notes    []string  `json:"notes,omitempty"`
}

// Program is one installed program or package.
type Program struct {
	Name      string `json:"name"`
	Version   string `json:"version,omitempty"`
	Publisher string `json:"publisher,omitempty"`
	// Source: registry64, registry32, dpkg, rpm.
	Source      string `json:"source,omitempty"`
	InstallDate string `json:"install_date,omitempty"`
}

// Hotfix is one installed Windows update.
type Hotfix struct {
	ID          string `json:"id"`
	Description string `json:"description,omitempty"`
	InstalledOn string `json:"installed_on,omitempty"`
}

// HostPerf is published on host_perf.<pc>. Rates are nil on the first
// sample.
type HostPerf struct {
	PCID           string    `json:"pc_id"`
	At             time.Time `json:"at"`
	CPUPct         *float64  `json:"cpu_pct"`
	MemTotalBytes  uint64    `json:"mem_total_bytes"`
	MemUsedBytes   uint64    `json:"mem_used_bytes"`
	SwapTotalBytes uint64    `json:"swap_total_bytes"`
	SwapUsedBytes  uint64    `json:"swap_used_bytes"`
	DiskReadBps    *float64  `json:"disk_read_bps"`
	DiskWriteBps   *float64  `json:"disk_write_bps"`
	NetRxBps       *float64  `json:"net_rx_bps"`
	NetTxBps       *float64  `json:"net_tx_bps"`
}
