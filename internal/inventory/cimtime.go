package inventory

// Date formats that Windows inventory sources use. Pure functions without a
// build tag so that they are tested on every platform; only the Windows
// collector calls them.

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// parseCIMDateTime parses a CIM_DATETIME timestamp as WMI returns it:
//
//	yyyymmddHHMMSS.mmmmmmsUUU
//
// (microseconds, then the sign and the offset from UTC in minutes), e.g.
// 20240131093000.500000+540. The result carries that offset as its zone.
// A field written as asterisks is "not significant": time fields and the
// offset then count as zero, but the date is required. Wine writes some
// offsets with fewer than three digits (+00); they are accepted. Intervals
// (ddddddddHHMMSS.mmmmmm:000) are not timestamps and are rejected.
func parseCIMDateTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if len(s) < 23 || len(s) > 25 || s[14] != '.' {
		return time.Time{}, fmt.Errorf("CIM datetime %q: not yyyymmddHHMMSS.mmmmmmsUUU", s)
	}
	switch s[21] {
	case '+', '-':
	case ':':
		return time.Time{}, fmt.Errorf("CIM datetime %q: an interval, not a timestamp", s)
	default:
		return time.Time{}, fmt.Errorf("CIM datetime %q: no UTC offset sign", s)
	}
	// field parses s[i:j]; an all-asterisk field is absent (ok=false).
	var bad error
	field := func(i, j int, name string) (v int, present bool) {
		f := s[i:j]
		if strings.Trim(f, "*") == "" {
			return 0, false
		}
		// Microseconds may be partly significant (123***).
		if name == "microseconds" {
			f = strings.TrimRight(f, "*") + strings.Repeat("0", len(f)-len(strings.TrimRight(f, "*")))
		}
		n, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			bad = errors.Join(bad, fmt.Errorf("%s %q", name, s[i:j]))
		}
		return int(n), true
	}
	year, okY := field(0, 4, "year")
	month, okM := field(4, 6, "month")
	day, okD := field(6, 8, "day")
	hour, _ := field(8, 10, "hour")
	minute, _ := field(10, 12, "minute")
	sec, _ := field(12, 14, "second")
	usec, _ := field(15, 21, "microseconds")
	off, _ := field(22, len(s), "UTC offset")
	if bad != nil {
		return time.Time{}, fmt.Errorf("CIM datetime %q: bad %w", s, bad)
	}
	if !okY || !okM || !okD {
		return time.Time{}, fmt.Errorf("CIM datetime %q: no date", s)
	}
	if year == 0 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || sec > 59 || off > 24*60 {
		return time.Time{}, fmt.Errorf("CIM datetime %q: out of range", s)
	}
	if s[21] == '-' {
		off = -off
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, usec*1000, time.FixedZone("", off*60))
	if t.Day() != day { // 30 February and the like
		return time.Time{}, fmt.Errorf("CIM datetime %q: no such day", s)
	}
	return t, nil
}

// cimDate returns the calendar date of a CIM_DATETIME as written (not
// moved to UTC: a BIOS release date is a day, not an instant) in
// 2006-01-02 form, or "" when s is not a CIM_DATETIME.
func cimDate(s string) string {
	t, err := parseCIMDateTime(s)
	if err != nil {
		return ""
	}
	return t.Format(time.DateOnly)
}

// uninstallDate normalises the InstallDate value of an Uninstall registry
// entry. Installers are meant to write yyyymmdd, which becomes 2006-01-02;
// anything else (some write locale dates) is kept as written.
func uninstallDate(s string) string {
	s = strings.TrimSpace(s)
	if len(s) == 8 {
		if t, err := time.Parse("20060102", s); err == nil {
			return t.Format(time.DateOnly)
		}
	}
	return s
}

// hotfixDate normalises Win32_QuickFixEngineering.InstalledOn to
// 2006-01-02. Windows writes M/D/YYYY whatever the locale, older systems
// a hexadecimal FILETIME (100 ns ticks since 1601, UTC); Wine writes D/M/YYYY
// ("22/2/2022"), recognisable when the first number cannot be a month.
// Anything else is kept as written.
func hotfixDate(s string) string {
	s = strings.TrimSpace(s)
	if parts := strings.Split(s, "/"); len(parts) == 3 {
		a, errA := strconv.Atoi(parts[0])
		b, errB := strconv.Atoi(parts[1])
		y, errY := strconv.Atoi(parts[2])
		if errA == nil && errB == nil && errY == nil && y >= 1980 && y <= 9999 {
			month, day := a, b
			if month > 12 && day <= 12 {
				month, day = day, month
			}
			t := time.Date(y, time.Month(month), day, 0, 0, 0, 0, time.UTC)
			if month >= 1 && month <= 12 && day >= 1 && t.Day() == day {
				return t.Format(time.DateOnly)
			}
		}
		return s
	}
	if len(s) == 16 {
		if ticks, err := strconv.ParseUint(s, 16, 64); err == nil {
			// Seconds between 1601-01-01 and 1970-01-01.
			const epochDelta = 11644473600
			secs := int64(ticks/10_000_000) - epochDelta
			t := time.Unix(secs, 0).UTC()
			if t.Year() >= 1980 && t.Year() <= 9999 {
				return t.Format(time.DateOnly)
			}
		}
	}
	return s
}
