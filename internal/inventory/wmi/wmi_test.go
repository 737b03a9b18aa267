package wmi

import (
	"errors"
	"fmt"
	"testing"
)

func TestBuildWQLSelectsOnlyTheNamedProperties(t *testing.T) {
	q, err := buildWQL("Win32_LogicalDisk", []string{"DeviceID", "Size"}, " DriveType = 3 ")
	if err != nil {
		t.Fatal(err)
	}
	if want := "SELECT DeviceID, Size FROM Win32_LogicalDisk WHERE DriveType = 3"; q != want {
		t.Fatalf("got %q, want %q", q, want)
	}
	if q, _ := buildWQL("Win32_BIOS", []string{"Manufacturer"}, ""); q != "SELECT Manufacturer FROM Win32_BIOS" {
		t.Fatalf("without WHERE: %q", q)
	}
}

func TestBuildWQLRejectsWhatIsNotAnIdentifier(t *testing.T) {
	for _, tc := range []struct {
		class string
		props []string
	}{
		{"Win32_BIOS", nil},                  // SELECT * is not offered
		{"Win32_BIOS", []string{"*"}},        // nor spelled out
		{"", []string{"Name"}},               // no class
		{"Win32_BIOS; x", []string{"Name"}},  // injection
		{"Win32_BIOS", []string{"Name, *"}},  // injection
		{"Win32_BIOS", []string{""}},         // empty property
		{"Win32 BIOS", []string{"Name"}},     // space
		{"Win32_BIOS", []string{"Na-me"}},    // punctuation
		{"Win32_BIOS", []string{"Näme"}},     // non-ASCII
		{"Win32_BIOS", []string{"Name", ""}}, // one bad of two
	} {
		if q, err := buildWQL(tc.class, tc.props, ""); err == nil {
			t.Errorf("buildWQL(%q, %q) = %q, want an error", tc.class, tc.props, q)
		}
	}
}

func TestRowAccessorsConvertWhatWMIReturns(t *testing.T) {
	r := Row{
		"Name":      "  Intel(R) Core(TM) i7  ",
		"Cores":     uint64(8),
		"Signed":    int64(4),
		"Negative":  int64(-1),
		"Size":      "82252800000", // a CIM_UINT64 left as text
		"NotNumber": "abc",
		"Float":     float64(2),
		"Half":      float64(2.5),
		"Null":      nil,
		"Yes":       true,
	}
	if got := r.String("Name"); got != "Intel(R) Core(TM) i7" {
		t.Errorf("String(Name) = %q", got)
	}
	for _, tc := range []struct {
		name string
		want uint64
		ok   bool
	}{
		{"Cores", 8, true}, {"Signed", 4, true}, {"Size", 82252800000, true}, {"Float", 2, true},
		{"Negative", 0, false}, {"NotNumber", 0, false}, {"Half", 0, false}, {"Null", 0, false},
		{"Absent", 0, false}, {"Yes", 0, false},
	} {
		if got, ok := r.Uint(tc.name); got != tc.want || ok != tc.ok {
			t.Errorf("Uint(%s) = %d, %v; want %d, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
	if v, ok := r.Bool("Yes"); !v || !ok {
		t.Errorf("Bool(Yes) = %v, %v", v, ok)
	}
	if _, ok := r.Bool("Null"); ok {
		t.Error("Bool(Null) ok, want not ok")
	}
	if r.String("Cores") != "" || r.String("Null") != "" || r.String("Absent") != "" {
		t.Error("String of a non-string is not empty")
	}
}

func TestErrorIsNoClassOnlyForTheClassCodes(t *testing.T) {
	for _, tc := range []struct {
		err  *Error
		want bool
	}{
		{&Error{Op: "IWbemServices::ExecQuery", Code: wbemEInvalidClass}, true},
		{&Error{Op: "IWbemServices::GetObject(Win32_X)", Code: wbemENotFound}, true},
		{&Error{Op: "IWbemClassObject::Get(Name)", Code: wbemENotFound}, false},
		{&Error{Op: "IWbemServices::ExecQuery", Code: wbemEInvalidQuery}, false},
		{&Error{Op: "IWbemServices::ExecQuery", Code: wbemEAccessDenied}, false},
	} {
		wrapped := fmt.Errorf("outer: %w", tc.err)
		if got := errors.Is(wrapped, ErrNoClass); got != tc.want {
			t.Errorf("errors.Is(%v, ErrNoClass) = %v, want %v", tc.err, got, tc.want)
		}
	}
	if got := (&Error{Op: "IWbemServices::ExecQuery", Code: wbemEInvalidClass}).Error(); got != "wmi: IWbemServices::ExecQuery: WBEM_E_INVALID_CLASS (0x80041010)" {
		t.Errorf("Error() = %q", got)
	}
	if got := (&Error{Op: "X", Code: 0x80001234}).Error(); got != "wmi: X: HRESULT 0x80001234" {
		t.Errorf("Error() of an unnamed code = %q", got)
	}
}
