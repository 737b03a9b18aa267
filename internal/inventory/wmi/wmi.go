// Package wmi is a small, dependency-free WMI client for the Windows
// inventory: WQL queries against ROOT\CIMV2 through the native COM
// interfaces (IWbemLocator, IWbemServices, IEnumWbemClassObject,
// IWbemClassObject) called through their vtables with golang.org/x/sys.
//
// # Why not github.com/yusufpapurcu/wmi (or go-ole's scripting route)
//
// That library goes through the scripting layer (wbemdisp.dll):
// SWbemLocator.ConnectServer, SWbemServices.ExecQuery, then reads every
// property of each SWbemObject with IDispatch::GetIDsOfNames + Invoke
// (DISPATCH_PROPERTYGET). Wine 8's wbemdisp resolves the property names to
// dynamic DISPIDs, but its object_Invoke only serves those DISPIDs when the
// caller passes DISPATCH_METHOD|DISPATCH_PROPERTYGET (what VBScript and
// JScript send for obj.Prop); for DISPATCH_PROPERTYGET alone (what go-ole's
// oleutil.GetProperty sends) it logs "fixme:wbemdisp:object_Invoke flags
// 0x2 not supported" and returns E_NOTIMPL. yusufpapurcu/wmi turns that
// error into an ErrFieldMismatch ("no such struct field"), keeps the zero
// value and goes on, so every row comes back with every field empty — and
// callers that tolerate ErrFieldMismatch (most do, for optional fields)
// never notice. Measured under Wine 8.0: Invoke(PROPERTYGET) → E_NOTIMPL,
// Invoke(PROPERTYGET|METHOD) → "Microsoft Windows 7 Professional".
//
// The native route skips wbemdisp altogether: IWbemClassObject::Get is
// served by wbemprox, the WMI provider itself, which Wine implements for
// Win32_OperatingSystem, Win32_Processor, Win32_ComputerSystem,
// Win32_LogicalDisk and more. It is also what the scripting layer does
// underneath on real Windows, one layer (and one IDispatch round trip per
// property) less.
//
// # Guarantees
//
//   - Only the properties asked for are selected (no SELECT *): WMI
//     providers compute some properties expensively, and WMI storms are a
//     known complaint.
//   - A property the host's WMI lacks is reported in Result.Missing and
//     the query is re-run without it (WMI refuses the whole query with
//     WBEM_E_INVALID_QUERY otherwise); a class the host lacks is ErrNoClass.
//   - Every query honours its context's deadline: the enumeration waits
//     at most until the deadline (IEnumWbemClassObject::Next's timeout), and
//     a query stuck in a call that has no timeout (ConnectServer,
//     ExecQuery, Get) is abandoned: Query returns ErrTimeout while the
//     goroutine finishes on its own. See Query for the bound on abandoned
//     queries.
package wmi

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Row is one instance: property name → value. Values are nil (VT_NULL:
// the instance has no value), string, int64, uint64, bool or float64.
// CIM_UINT64/CIM_SINT64 properties, which WMI transports as strings, are
// decoded to uint64/int64; CIM_DATETIME stays the CIM string
// (yyyymmddHHMMSS.mmmmmmsUUU).
type Row map[string]any

// String returns a string property with surrounding spaces trimmed
// (Win32_Processor.Name is padded on many CPUs), or "" if it is null,
// absent or not a string.
func (r Row) String(name string) string {
	s, _ := r[name].(string)
	return strings.TrimSpace(s)
}

// Uint returns a non-negative integer property (also from its decimal
// string form). ok is false for null, absent, negative or non-numeric
// values.
func (r Row) Uint(name string) (v uint64, ok bool) {
	switch x := r[name].(type) {
	case uint64:
		return x, true
	case int64:
		if x >= 0 {
			return uint64(x), true
		}
	case float64:
		if x >= 0 && x <= math.MaxUint64 && x == math.Trunc(x) {
			return uint64(x), true
		}
	case string:
		u, err := strconv.ParseUint(strings.TrimSpace(x), 10, 64)
		return u, err == nil
	}
	return 0, false
}

// Bool returns a boolean property; ok is false for null, absent or
// non-boolean values.
func (r Row) Bool(name string) (v, ok bool) {
	b, ok := r[name].(bool)
	return b, ok
}

// Result is the answer to one query.
type Result struct {
	Rows []Row
	// Missing lists the requested properties that the class does not have
	// on this host, in request order. They are absent from every Row.
	Missing []string
	// Undecoded lists the requested properties whose values had a VARIANT
	// type this client does not decode (arrays, embedded objects); they are
	// nil in the rows.
	Undecoded []string
}

var (
	// ErrTimeout: the context ended before the query finished.
	ErrTimeout = errors.New("wmi: query did not finish in time")
	// ErrBusy: too many earlier queries are still running after their
	// callers gave up on them (see Query); none is started.
	ErrBusy = errors.New("wmi: earlier queries are still stuck in WMI; not starting another")
	// ErrNoClass: the namespace has no such class on this host.
	ErrNoClass = errors.New("wmi: no such class")
)

// Error is a failed COM/WMI call with its HRESULT.
type Error struct {
	Op   string // the interface method or API that failed
	Code uint32 // HRESULT
}

func (e *Error) Error() string {
	if name, ok := hresultNames[e.Code]; ok {
		return fmt.Sprintf("wmi: %s: %s (0x%08X)", e.Op, name, e.Code)
	}
	return fmt.Sprintf("wmi: %s: HRESULT 0x%08X", e.Op, e.Code)
}

// Is makes errors.Is(err, ErrNoClass) true for the WMI codes that mean
// the class does not exist.
func (e *Error) Is(target error) bool {
	if target != ErrNoClass {
		return false
	}
	// ExecQuery says WBEM_E_INVALID_CLASS; GetObject of a class path says
	// WBEM_E_NOT_FOUND (which elsewhere means a missing property or
	// instance).
	return e.Code == wbemEInvalidClass ||
		(e.Code == wbemENotFound && strings.HasPrefix(e.Op, "IWbemServices::GetObject"))
}

// HRESULTs this package acts on or names in messages.
const (
	sOK               = 0x00000000
	sFalse            = 0x00000001 // WBEM_S_FALSE: enumeration finished
	wbemSTimedOut     = 0x00040004
	eNoInterface      = 0x80004002
	eNotImpl          = 0x80004001
	eAccessDenied     = 0x80070005
	rpcEChangedMode   = 0x80010106
	wbemEFailed       = 0x80041001
	wbemENotFound     = 0x80041002
	wbemEAccessDenied = 0x80041003
	wbemEInvalidClass = 0x80041010
	wbemEInvalidQuery = 0x80041017
	wbemEShuttingDown = 0x80041033
	wbemEQuotaVioltn  = 0x8004106C
)

var hresultNames = map[uint32]string{
	eNoInterface:      "E_NOINTERFACE",
	eNotImpl:          "E_NOTIMPL",
	eAccessDenied:     "E_ACCESSDENIED",
	rpcEChangedMode:   "RPC_E_CHANGED_MODE",
	wbemEFailed:       "WBEM_E_FAILED",
	wbemENotFound:     "WBEM_E_NOT_FOUND",
	wbemEAccessDenied: "WBEM_E_ACCESS_DENIED",
	wbemEInvalidClass: "WBEM_E_INVALID_CLASS",
	wbemEInvalidQuery: "WBEM_E_INVALID_QUERY",
	wbemEShuttingDown: "WBEM_E_SHUTTING_DOWN",
	wbemEQuotaVioltn:  "WBEM_E_QUOTA_VIOLATION",
}

// buildWQL returns "SELECT a, b FROM class[ WHERE where]". Class and
// property names must be WMI identifiers (letters, digits, underscore):
// they are spliced into the query text. where is trusted caller text.
func buildWQL(class string, props []string, where string) (string, error) {
	if !isIdent(class) {
		return "", fmt.Errorf("wmi: bad class name %q", class)
	}
	if len(props) == 0 {
		return "", errors.New("wmi: no properties selected")
	}
	for _, p := range props {
		if !isIdent(p) {
			return "", fmt.Errorf("wmi: bad property name %q", p)
		}
	}
	q := "SELECT " + strings.Join(props, ", ") + " FROM " + class
	if where = strings.TrimSpace(where); where != "" {
		q += " WHERE " + where
	}
	return q, nil
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '_' && (c < '0' || c > '9') && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') {
			return false
		}
	}
	return true
}
