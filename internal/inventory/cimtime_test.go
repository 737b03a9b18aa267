package inventory

import (
	"testing"
	"time"
)

func TestParseCIMDateTime(t *testing.T) {
	zone := func(min int) *time.Location { return time.FixedZone("", min*60) }
	for _, tc := range []struct {
		in   string
		want time.Time // zero: an error is expected
	}{
		{"20140101000000.000000+000", time.Date(2014, 1, 1, 0, 0, 0, 0, zone(0))},
		// Real Windows: local time with the offset in minutes.
		{"20240131093000.500000+540", time.Date(2024, 1, 31, 9, 30, 0, 500000000, zone(540))},
		{"20231105013000.000000-300", time.Date(2023, 11, 5, 1, 30, 0, 0, zone(-300))},
		{"20231105013000.123456-030", time.Date(2023, 11, 5, 1, 30, 0, 123456000, zone(-30))},
		// Wine's LocalDateTime: a two-digit offset.
		{"20261127141419.993000+00", time.Date(2026, 11, 27, 14, 14, 19, 993000000, zone(0))},
		// Surrounding spaces, as some providers pad.
		{" 20120608000000.000000+000 ", time.Date(2012, 6, 8, 0, 0, 0, 0, zone(0))},
		// Insignificant (asterisk) fields count as zero, except the date.
		{"20120608******.******+***", time.Date(2012, 6, 8, 0, 0, 0, 0, zone(0))},
		{"20120608101500.123***+060", time.Date(2012, 6, 8, 10, 15, 0, 123000000, zone(60))},
		{"2024022912****.******+000", time.Date(2024, 2, 29, 12, 0, 0, 0, zone(0))},
		// Errors.
		{"", time.Time{}},
		{"2014", time.Time{}},
		{"20140101000000", time.Time{}},
		{"20140101000000.000000", time.Time{}},
		{"00000000000000.000000+000", time.Time{}}, // year 0: "no value"
		{"********000000.000000+000", time.Time{}}, // no date
		{"20141301000000.000000+000", time.Time{}}, // month 13
		{"20230230000000.000000+000", time.Time{}}, // 30 February
		{"20230101250000.000000+000", time.Time{}}, // hour 25
		{"2023010100000x.000000+000", time.Time{}},
		{"20230101000000.000000*000", time.Time{}},          // no sign
		{"00000001020304.000000:000", time.Time{}},          // an interval
		{"20230101000000.000000+000000", time.Time{}},       // too long
		{"20230101000000,000000+000", time.Time{}},          // no dot
		{"20230101000000.000000+9999", time.Time{}},         // too long offset
		{"20230101000000.000000+1441", time.Time{}},         // offset > 24 h
		{"2023-01-01T00:00:00Z", time.Time{}},               // RFC 3339 is not CIM
		{"20230101000000.000000+-10", time.Time{}},          // sign inside the offset
		{"20230101000000.00000a+000", time.Time{}},          // bad microseconds
		{"2023010100000 .000000+000", time.Time{}},          // bad second
		{"20230101000000.000000+0x1", time.Time{}},          // hex offset
		{"20230101000000.000000+ 10", time.Time{}},          // space in the offset
		{"20230101000000.000000+***extra", time.Time{}},     // trailing text
		{"20230101000000.000000+000\x00", time.Time{}},      // NUL
		{"２0230101000000.000000+000", time.Time{}},          // full-width digit
		{"20230101000000.000000++00", time.Time{}},          // double sign
		{"20230101000000.000000+-00", time.Time{}},          // mixed signs
		{"-0230101000000.000000+000", time.Time{}},          // negative year
		{"20230100000000.000000+000", time.Time{}},          // day 0
		{"20230001000000.000000+000", time.Time{}},          // month 0
		{"20230101006000.000000+000", time.Time{}},          // minute 60
		{"20230101000060.000000+000", time.Time{}},          // second 60
		{"20230101000000.000000+", time.Time{}},             // empty offset
		{"20230101000000.000000-", time.Time{}},             // empty offset
		{"20230101000000.0000000+000", time.Time{}},         // 7 fraction digits
		{"20230101000000.000000 +000", time.Time{}},         // space before sign
		{"20230101 00000.000000+000", time.Time{}},          // space in time
		{"2023 101000000.000000+000", time.Time{}},          // space in date
		{"20230101000000.000000+000 trailing", time.Time{}}, // trailing words
	} {
		got, err := parseCIMDateTime(tc.in)
		if tc.want.IsZero() {
			if err == nil {
				t.Errorf("parseCIMDateTime(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseCIMDateTime(%q): %v", tc.in, err)
			continue
		}
		_, gotOff := got.Zone()
		_, wantOff := tc.want.Zone()
		if !got.Equal(tc.want) || gotOff != wantOff {
			t.Errorf("parseCIMDateTime(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestParseCIMDateTimeInstantIsOffsetCorrected(t *testing.T) {
	// 09:30 at UTC+9 is 00:30 UTC: the OS collector stores UTC instants.
	got, err := parseCIMDateTime("20240131093000.000000+540")
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2024, 1, 31, 0, 30, 0, 0, time.UTC); !got.UTC().Equal(want) || got.UTC() != want {
		t.Fatalf("UTC = %v, want %v", got.UTC(), want)
	}
}

func TestCIMDateKeepsTheWrittenDay(t *testing.T) {
	for in, want := range map[string]string{
		"20120608000000.000000+000": "2012-06-08",
		// A BIOS date written at local midnight west of UTC stays that day.
		"20120608000000.000000-300": "2012-06-08",
		"20120608******.******+***": "2012-06-08",
		"":                          "",
		"not a date":                "",
	} {
		if got := cimDate(in); got != want {
			t.Errorf("cimDate(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUninstallDate(t *testing.T) {
	for in, want := range map[string]string{
		"20230115":   "2023-01-15",
		" 20230115 ": "2023-01-15",
		"20231332":   "20231332", // not a date: kept
		"2023-01-15": "2023-01-15",
		"15.01.2023": "15.01.2023",
		"":           "",
	} {
		if got := uninstallDate(in); got != want {
			t.Errorf("uninstallDate(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHotfixDate(t *testing.T) {
	for in, want := range map[string]string{
		"3/14/2023":        "2023-03-14", // Windows: M/D/YYYY
		"5/6/2023":         "2023-05-06", // ambiguous: Windows' order
		"22/2/2022":        "2022-02-22", // Wine: D/M/YYYY
		"2/30/2023":        "2/30/2023",  // no such day: kept
		"13/13/2023":       "13/13/2023",
		"01cc2c1b6e4bfa3a": "2011-06-16", // FILETIME, as older Windows writes
		"":                 "",
		"yesterday":        "yesterday",
	} {
		if got := hotfixDate(in); got != want {
			t.Errorf("hotfixDate(%q) = %q, want %q", in, got, want)
		}
	}
}
