//go:build windows

package wmi

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// MaxInFlight bounds the queries whose goroutines are still running,
// including the ones Query gave up on after their deadline. A query stuck
// inside ConnectServer/ExecQuery/Get (calls with no timeout of their own)
// cannot be interrupted; its goroutine keeps its OS thread and that
// thread's COM apartment membership until WMI answers, then uninitialises
// COM and exits (the thread is never unlocked, so Go ends it). Callers run
// queries one after another, so one slot is in use normally; the others
// absorb up to MaxInFlight-1 hung queries. Beyond that Query fails at once
// with ErrBusy instead of piling up threads and apartments on a WMI service
// that is not answering.
const MaxInFlight = 4

var slots = make(chan struct{}, MaxInFlight)

// testHook, when set by this package's tests, runs on the query goroutine
// with stage "com" after COM is initialised (before WMI is contacted) and
// with stage "exit" as the goroutine ends, after giving its slot back.
var testHook func(stage string)

// Query runs SELECT props FROM class [WHERE where] in ROOT\CIMV2 and
// returns the instances. Properties the class lacks on this host are left
// out of the query and listed in Result.Missing; a class the host lacks is
// an error that errors.Is ErrNoClass.
//
// The query runs on its own goroutine, locked to its OS thread with COM
// initialised there (multithreaded apartment). When ctx ends first, Query
// returns an error that errors.Is ErrTimeout and abandons the goroutine;
// see MaxInFlight for why that is bounded. The enumeration itself uses
// ctx's deadline as IEnumWbemClassObject::Next's timeout, so a slow
// provider usually ends the goroutine by itself at the deadline.
func Query(ctx context.Context, class string, props []string, where string) (*Result, error) {
	wql, err := buildWQL(class, props, where)
	if err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, timeoutError(ctx)
	}
	select {
	case slots <- struct{}{}:
	default:
		return nil, ErrBusy
	}
	deadline, _ := ctx.Deadline()
	type outcome struct {
		res *Result
		err error
	}
	done := make(chan outcome, 1) // buffered: an abandoned goroutine must not block
	go func() {
		defer func() {
			<-slots
			if testHook != nil {
				testHook("exit")
			}
		}()
		// Never unlocked: when this goroutine returns, Go terminates the
		// thread, so no other goroutine inherits its COM state.
		runtime.LockOSThread()
		res, err := run(deadline, class, props, where, wql)
		done <- outcome{res, err}
	}()
	select {
	case o := <-done:
		return o.res, o.err
	case <-ctx.Done():
		// Prefer an answer that arrived together with the deadline.
		select {
		case o := <-done:
			return o.res, o.err
		default:
		}
		return nil, timeoutError(ctx)
	}
}

func timeoutError(ctx context.Context) error {
	return fmt.Errorf("%w (%v)", ErrTimeout, context.Cause(ctx))
}

// COM plumbing. Every interface pointer is a *comObj: its first word points
// at the vtable. The vtable indexes below count IUnknown's three methods.
type comObj struct{ vtbl *[64]uintptr }

const (
	vtRelease = 2

	// IWbemLocator
	vtConnectServer = 3
	// IWbemServices
	vtGetObject = 6
	vtExecQuery = 20
	// IEnumWbemClassObject
	vtNext = 4
	// IWbemClassObject
	vtGet = 4
)

var (
	modole32    = windows.NewLazySystemDLL("ole32.dll")
	modoleaut32 = windows.NewLazySystemDLL("oleaut32.dll")

	procCoInitializeEx    = modole32.NewProc("CoInitializeEx")
	procCoUninitialize    = modole32.NewProc("CoUninitialize")
	procCoCreateInstance  = modole32.NewProc("CoCreateInstance")
	procCoSetProxyBlanket = modole32.NewProc("CoSetProxyBlanket")
	procSysAllocString    = modoleaut32.NewProc("SysAllocString")
	procSysFreeString     = modoleaut32.NewProc("SysFreeString")
	procVariantClear      = modoleaut32.NewProc("VariantClear")

	clsidWbemLocator = windows.GUID{Data1: 0x4590F811, Data2: 0x1D3A, Data3: 0x11D0, Data4: [8]byte{0x89, 0x1F, 0x00, 0xAA, 0x00, 0x4B, 0x2E, 0x24}}
	iidIWbemLocator  = windows.GUID{Data1: 0xDC12A687, Data2: 0x737F, Data3: 0x11CF, Data4: [8]byte{0x88, 0x4D, 0x00, 0xAA, 0x00, 0x4B, 0x2E, 0x24}}
)

const (
	coinitMultithreaded = 0x0
	clsctxInprocServer  = 0x1

	rpcCAuthnWinNT           = 10
	rpcCAuthzNone            = 0
	rpcCAuthnLevelCall       = 3
	rpcCImpLevelImpersonate  = 3
	eoacNone                 = 0
	wbemFlagReturnImmediatly = 0x10
	wbemFlagForwardOnly      = 0x20
	wbemInfinite             = 0xFFFFFFFF

	nextBatch = 32
)

// call invokes vtable method idx of o. uintptrescapes keeps every pointer
// passed as a uintptr on the heap and alive for the call (the rule that
// syscall.SyscallN gets from the compiler does not extend to a wrapper).
//
//go:uintptrescapes
func (o *comObj) call(idx int, args ...uintptr) uint32 {
	a := make([]uintptr, 0, len(args)+1)
	a = append(a, uintptr(unsafe.Pointer(o)))
	a = append(a, args...)
	r, _, _ := syscall.SyscallN(o.vtbl[idx], a...)
	return uint32(r) // HRESULT is 32 bits; the upper half of RAX is undefined
}

func (o *comObj) release() {
	if o != nil {
		o.call(vtRelease)
	}
}

// hr calls a DLL function that returns an HRESULT; uintptrescapes as for
// call.
//
//go:uintptrescapes
func hr(p *windows.LazyProc, args ...uintptr) uint32 {
	r, _, _ := p.Call(args...)
	return uint32(r)
}

func failed(code uint32) bool { return code&0x80000000 != 0 }

// bstr is a BSTR allocated with SysAllocString; free it with free.
type bstr uintptr

func newBSTR(s string) (bstr, error) {
	p, err := windows.UTF16PtrFromString(s)
	if err != nil {
		return 0, err
	}
	r, _, _ := procSysAllocString.Call(uintptr(unsafe.Pointer(p)))
	if r == 0 {
		return 0, &Error{Op: "SysAllocString", Code: 0x8007000E} // E_OUTOFMEMORY
	}
	return bstr(r), nil
}

func (b bstr) free() {
	if b != 0 {
		procSysFreeString.Call(uintptr(b))
	}
}

// variant is the 24-byte VARIANT of 64-bit Windows (16 bytes on 32-bit;
// the extra word is unused there).
type variant struct {
	vt  uint16
	_   [3]uint16
	val [2]uint64
}

func (v *variant) clear() { procVariantClear.Call(uintptr(unsafe.Pointer(v))) }

// VARTYPEs and CIMTYPEs decoded here.
const (
	vtEmpty = 0
	vtNull  = 1
	vtI2    = 2
	vtI4    = 3
	vtR4    = 4
	vtR8    = 5
	vtBSTR  = 8
	vtBool  = 11
	vtI1    = 16
	vtUI1   = 17
	vtUI2   = 18
	vtUI4   = 19
	vtI8    = 20
	vtUI8   = 21
	vtInt   = 22
	vtUint  = 23

	cimSint64 = 20
	cimUint32 = 19
	cimUint64 = 21
)

// decode converts a VARIANT that IWbemClassObject::Get filled. WMI sends
// CIM_UINT32 as VT_I4 (so it is reinterpreted unsigned) and 64-bit
// integers as VT_BSTR (parsed back).
func decode(v *variant, cimType int32) (val any, ok bool) {
	p := unsafe.Pointer(&v.val[0])
	switch v.vt {
	case vtEmpty, vtNull:
		return nil, true
	case vtBSTR:
		s := bstrString(*(**uint16)(p))
		switch cimType {
		case cimUint64:
			if u, err := strconv.ParseUint(s, 10, 64); err == nil {
				return u, true
			}
		case cimSint64:
			if i, err := strconv.ParseInt(s, 10, 64); err == nil {
				return i, true
			}
		}
		return s, true
	case vtBool:
		return *(*int16)(p) != 0, true // VARIANT_TRUE is -1
	case vtI1:
		return int64(*(*int8)(p)), true
	case vtUI1:
		return uint64(*(*uint8)(p)), true
	case vtI2:
		return int64(*(*int16)(p)), true
	case vtUI2:
		return uint64(*(*uint16)(p)), true
	case vtI4, vtInt:
		i := *(*int32)(p)
		if cimType == cimUint32 {
			return uint64(uint32(i)), true
		}
		return int64(i), true
	case vtUI4, vtUint:
		return uint64(*(*uint32)(p)), true
	case vtI8:
		return *(*int64)(p), true
	case vtUI8:
		return *(*uint64)(p), true
	case vtR4:
		return float64(*(*float32)(p)), true
	case vtR8:
		f := *(*float64)(p)
		if math.IsNaN(f) {
			return nil, true
		}
		return f, true
	}
	return nil, false
}

// bstrString copies a BSTR; its length prefix (bytes, before the first
// character) allows embedded NULs.
func bstrString(p *uint16) string {
	if p == nil {
		return ""
	}
	n := *(*uint32)(unsafe.Add(unsafe.Pointer(p), -4)) / 2
	return windows.UTF16ToString(unsafe.Slice(p, n))
}

// run does one query on the current (locked) thread.
func run(deadline time.Time, class string, props []string, where, wql string) (*Result, error) {
	switch code := hr(procCoInitializeEx, 0, coinitMultithreaded); code {
	case sOK, sFalse:
		defer procCoUninitialize.Call()
	case rpcEChangedMode:
		// The thread already belongs to a single-threaded apartment that
		// someone else initialised (and will uninitialise); synchronous
		// WMI calls work from there too.
	default:
		return nil, &Error{Op: "CoInitializeEx", Code: code}
	}
	if testHook != nil {
		testHook("com")
	}

	var loc *comObj
	if code := hr(procCoCreateInstance,
		uintptr(unsafe.Pointer(&clsidWbemLocator)), 0, clsctxInprocServer,
		uintptr(unsafe.Pointer(&iidIWbemLocator)), uintptr(unsafe.Pointer(&loc))); failed(code) {
		return nil, &Error{Op: "CoCreateInstance(WbemLocator)", Code: code}
	}
	defer loc.release()

	ns, err := newBSTR(`ROOT\CIMV2`)
	if err != nil {
		return nil, err
	}
	defer ns.free()
	var svc *comObj
	if code := loc.call(vtConnectServer, uintptr(ns), 0, 0, 0, 0, 0, 0, uintptr(unsafe.Pointer(&svc))); failed(code) {
		return nil, &Error{Op: "IWbemLocator::ConnectServer", Code: code}
	}
	defer svc.release()
	// Impersonation is what WMI needs to act for the caller; the default
	// blanket (identify) makes some providers fail with access denied. An
	// in-process object (Wine's wbemprox) is no proxy: it has no blanket to
	// set and says so with E_NOINTERFACE, which is harmless.
	setBlanket(svc)

	res, err := execQuery(svc, wql, props, deadline)
	if err == nil {
		if len(res.Rows) > 0 {
			return res, nil
		}
		// No instance to read properties from. The class definition says
		// which of them exist, and whether the class does: Wine answers a
		// query of a class it does not implement with no instances instead
		// of WBEM_E_INVALID_CLASS (real Windows fails ExecQuery). Under
		// Wine, GetObject of a class finds its first instance, so a class
		// Wine has but with no instances also reads as ErrNoClass there.
		_, missing, cerr := classProperties(svc, class, props)
		if cerr != nil {
			if errors.Is(cerr, ErrNoClass) {
				return nil, cerr
			}
			return res, nil // the empty answer stands
		}
		res.Missing = missing
		return res, nil
	}
	// WMI rejects a whole query naming a property the class lacks (an
	// older Windows, or Wine). Learn which ones exist from the class
	// definition and ask again without the others.
	var we *Error
	if !errors.As(err, &we) || we.Code != wbemEInvalidQuery {
		return nil, err
	}
	present, missing, cerr := classProperties(svc, class, props)
	if cerr != nil {
		return nil, cerr
	}
	if len(missing) == 0 {
		return nil, err // the properties exist: the WHERE clause is at fault
	}
	if len(present) == 0 {
		return &Result{Missing: missing}, nil
	}
	wql2, berr := buildWQL(class, present, where)
	if berr != nil {
		return nil, berr
	}
	res, err = execQuery(svc, wql2, present, deadline)
	if err != nil {
		return nil, err
	}
	res.Missing = mergeInOrder(props, missing, res.Missing)
	return res, nil
}

func setBlanket(o *comObj) {
	procCoSetProxyBlanket.Call(uintptr(unsafe.Pointer(o)), rpcCAuthnWinNT, rpcCAuthzNone, 0,
		rpcCAuthnLevelCall, rpcCImpLevelImpersonate, 0, eoacNone)
}

// execQuery runs wql semi-synchronously (forward-only, return immediately)
// and reads props from every instance, waiting at most until deadline.
func execQuery(svc *comObj, wql string, props []string, deadline time.Time) (*Result, error) {
	lang, err := newBSTR("WQL")
	if err != nil {
		return nil, err
	}
	defer lang.free()
	q, err := newBSTR(wql)
	if err != nil {
		return nil, err
	}
	defer q.free()
	var enum *comObj
	if code := svc.call(vtExecQuery, uintptr(lang), uintptr(q), wbemFlagForwardOnly|wbemFlagReturnImmediatly, 0,
		uintptr(unsafe.Pointer(&enum))); failed(code) {
		return nil, &Error{Op: "IWbemServices::ExecQuery", Code: code}
	}
	defer enum.release()
	setBlanket(enum)

	names := make([]*uint16, len(props))
	for i, p := range props {
		if names[i], err = windows.UTF16PtrFromString(p); err != nil {
			return nil, err
		}
	}
	res := &Result{}
	var objs [nextBatch]*comObj
	for {
		timeout := uint32(wbemInfinite)
		if !deadline.IsZero() {
			left := time.Until(deadline).Milliseconds()
			if left <= 0 {
				return nil, fmt.Errorf("%w (deadline reached while enumerating)", ErrTimeout)
			}
			timeout = uint32(min(left, math.MaxInt32))
		}
		var n uint32
		code := enum.call(vtNext, uintptr(timeout), nextBatch, uintptr(unsafe.Pointer(&objs[0])), uintptr(unsafe.Pointer(&n)))
		if failed(code) {
			for _, o := range objs[:min(n, nextBatch)] {
				o.release()
			}
			return nil, &Error{Op: "IEnumWbemClassObject::Next", Code: code}
		}
		for i := range min(n, nextBatch) {
			row, err := readObject(objs[i], props, names, res)
			objs[i].release()
			objs[i] = nil
			if err != nil {
				for _, o := range objs[i+1 : min(n, nextBatch)] {
					o.release()
				}
				return nil, err
			}
			res.Rows = append(res.Rows, row)
		}
		switch {
		case code == sFalse: // fewer than asked: the enumeration is over
			return res, nil
		case code == wbemSTimedOut && n == 0:
			return nil, fmt.Errorf("%w (IEnumWbemClassObject::Next timed out)", ErrTimeout)
		}
	}
}

// readObject reads props from one instance; a property the instance does
// not have is recorded in res.Missing, one it cannot decode in
// res.Undecoded.
func readObject(obj *comObj, props []string, names []*uint16, res *Result) (Row, error) {
	row := make(Row, len(props))
	for i, p := range props {
		var v variant
		var cimType int32
		code := obj.call(vtGet, uintptr(unsafe.Pointer(names[i])), 0, uintptr(unsafe.Pointer(&v)), uintptr(unsafe.Pointer(&cimType)), 0)
		if code == wbemENotFound {
			if !slices.Contains(res.Missing, p) {
				res.Missing = append(res.Missing, p)
			}
			continue
		}
		if failed(code) {
			return nil, &Error{Op: "IWbemClassObject::Get(" + p + ")", Code: code}
		}
		val, ok := decode(&v, cimType)
		v.clear()
		if !ok && !slices.Contains(res.Undecoded, p) {
			res.Undecoded = append(res.Undecoded, p)
		}
		row[p] = val
	}
	return row, nil
}

// classProperties splits props into those the class defines and those it
// does not, using the class definition (IWbemServices::GetObject).
func classProperties(svc *comObj, class string, props []string) (present, missing []string, err error) {
	path, err := newBSTR(class)
	if err != nil {
		return nil, nil, err
	}
	defer path.free()
	var def *comObj
	if code := svc.call(vtGetObject, uintptr(path), 0, 0, uintptr(unsafe.Pointer(&def)), 0); failed(code) {
		return nil, nil, &Error{Op: "IWbemServices::GetObject(" + class + ")", Code: code}
	}
	defer def.release()
	for _, p := range props {
		name, err := windows.UTF16PtrFromString(p)
		if err != nil {
			return nil, nil, err
		}
		var v variant
		code := def.call(vtGet, uintptr(unsafe.Pointer(name)), 0, uintptr(unsafe.Pointer(&v)), 0, 0)
		v.clear()
		switch {
		case code == wbemENotFound:
			missing = append(missing, p)
		case failed(code):
			return nil, nil, &Error{Op: "IWbemClassObject::Get(" + class + "." + p + ")", Code: code}
		default:
			present = append(present, p)
		}
	}
	return present, missing, nil
}

// mergeInOrder returns the union of a and b ordered as in ref.
func mergeInOrder(ref, a, b []string) []string {
	var out []string
	for _, p := range ref {
		if slices.Contains(a, p) || slices.Contains(b, p) {
			out = append(out, p)
		}
	}
	return out
}
