// Package inventory collects what admins ask of an endpoint first:
// hardware, operating system, network and installed software. Collectors
// are per platform (WMI and the registry on Windows; /proc, /sys, statfs
// and the package databases on Linux) behind one interface.
//
// Guarantees: a class, file or field the host lacks becomes an empty field
// and a note, never a failed inventory; every WMI query has a timeout;
// lists are sorted so that two collections of an unchanged host are byte
// for byte equal (the publisher hashes them to send only what changed).
package inventory

import (
	"context"

	"github.com/kanade-project/kanade/internal/wire"
)

// Collector gathers one host's inventory.
type Collector interface {
	Hardware(ctx context.Context) wire.Hardware
	OS(ctx context.Context) wire.OSInfo
	Network(ctx context.Context) wire.Network
	Software(ctx context.Context) wire.Software
}

// Sources lets tests point a collector at fake files (a package database,
// /proc, /sys). The zero value means the real host.
type Sources struct {
	// Root prefixes every absolute path read (Linux): "" is the host.
	Root string
}

// New returns the collector for this platform.
func New(src Sources) Collector { return newPlatform(src) }
