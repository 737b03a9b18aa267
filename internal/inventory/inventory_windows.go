//go:build windows

package inventory

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"

	"github.com/kanade-project/kanade/internal/inventory/wmi"
)

// The Windows collector asks WMI (through the package's own native COM
// client, internal/inventory/wmi: see there for why not the scripting
// route) for hardware, the OS and hotfixes; it reads installed programs
// from the registry's Uninstall keys and the network from
// GetAdaptersAddresses. Sources.Root does not apply on Windows.
//
// WMI queries run one after another (never in parallel: WMI storms are a
// known complaint), select only the properties used, and each has its own
// timeout; a query that fails, times out, or names a class or property
// the host lacks leaves its fields empty with a note.
type windowsCollector struct {
	// timeout bounds each WMI query.
	timeout time.Duration
	// query runs one WMI query (wmi.Query; replaced by tests).
	query func(ctx context.Context, class string, props []string, where string) (*wmi.Result, error)
	// uninstall lists the registry views scanned for installed programs.
	uninstall []uninstallView
	// firmwareUUID is the fallback for the SMBIOS UUID when WMI has none.
	firmwareUUID func() string
}

// defaultWMITimeout is generous: a cold WMI service can take seconds to
// start its providers, but a query is never worth more than this.
const defaultWMITimeout = 20 * time.Second

func newPlatform(Sources) Collector { return newWindows() }

func newWindows() *windowsCollector {
	return &windowsCollector{
		timeout:      defaultWMITimeout,
		query:        wmi.Query,
		uninstall:    hostUninstallViews(),
		firmwareUUID: smbiosFirmwareUUID,
	}
}

// wmiRows runs one query under the collector's timeout. Whatever goes
// wrong is appended to notes, and the rows it got (possibly none) are
// returned: a class or property the host lacks, a timeout or a WMI error
// never fails the section.
func (c *windowsCollector) wmiRows(ctx context.Context, notes *[]string, class string, props []string, where string) []wmi.Row {
	if ctx.Err() != nil {
		*notes = append(*notes, fmt.Sprintf("%s: not queried: collection stopped early: %v", class, context.Cause(ctx)))
		return nil
	}
	qctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	res, err := c.query(qctx, class, props, where)
	switch {
	case err == nil:
	case errors.Is(err, wmi.ErrNoClass):
		*notes = append(*notes, fmt.Sprintf("%s: class not available on this host (%v)", class, err))
		return nil
	case errors.Is(err, wmi.ErrTimeout) && ctx.Err() == nil:
		*notes = append(*notes, fmt.Sprintf("%s: WMI did not answer within %v; its fields are left empty", class, c.timeout))
		return nil
	case errors.Is(err, wmi.ErrTimeout):
		*notes = append(*notes, fmt.Sprintf("%s: collection stopped early: %v", class, context.Cause(ctx)))
		return nil
	default:
		*notes = append(*notes, fmt.Sprintf("%s: %v", class, err))
		return nil
	}
	for _, p := range res.Missing {
		*notes = append(*notes, fmt.Sprintf("%s.%s: not provided by this host's WMI", class, p))
	}
	for _, p := range res.Undecoded {
		*notes = append(*notes, fmt.Sprintf("%s.%s: value of a type not decoded", class, p))
	}
	return res.Rows
}

// nativeArch is the architecture of Windows itself (not of this process,
// which may be emulated or WOW64), as GOARCH names it.
func nativeArch() string {
	var process, native uint16
	if err := windows.IsWow64Process2(windows.CurrentProcess(), &process, &native); err == nil {
		switch native {
		case 0x8664: // IMAGE_FILE_MACHINE_AMD64
			return "amd64"
		case 0xAA64: // IMAGE_FILE_MACHINE_ARM64
			return "arm64"
		case 0x014C: // IMAGE_FILE_MACHINE_I386
			return "386"
		}
	}
	// Windows before 10 1511 has no IsWow64Process2.
	if runtime.GOARCH == "386" {
		var wow64 bool
		if windows.IsWow64Process(windows.CurrentProcess(), &wow64) == nil && wow64 {
			return "amd64"
		}
	}
	return runtime.GOARCH
}

// regString reads a string value of an open key, trimmed; "" if absent or
// not a string.
func regString(k registry.Key, name string) string {
	s, _, err := k.GetStringValue(name)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(s)
}
