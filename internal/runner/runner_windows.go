package runner

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"unicode/utf16"
	"unsafe"

	"golang.org/x/sys/windows"
)

// DefaultShell is the shell used when a Command names none.
func DefaultShell() string { return "powershell" }

func buildCommand(shell, script, tmpDir string) (*exec.Cmd, func(), error) {
	switch shell {
	case "cmd":
		exe, err := findShell("cmd", filepath.Join(systemRoot(), "System32", "cmd.exe"))
		if err != nil {
			return nil, nil, err
		}
		return cmdCommand(exe, script, tmpDir)
	case "powershell":
		exe, err := findShell("powershell", filepath.Join(systemRoot(), "System32", "WindowsPowerShell", "v1.0", "powershell.exe"))
		if err != nil {
			return nil, nil, err
		}
		return psCommand(exe, script, tmpDir)
	case "pwsh":
		exe, err := findShell("pwsh", filepath.Join(programFiles(), "PowerShell", "7", "pwsh.exe"))
		if err != nil {
			return nil, nil, err
		}
		return psCommand(exe, script, tmpDir)
	case "sh", "bash":
		return nil, nil, fmt.Errorf("shell %s is not available on windows; use powershell, pwsh or cmd", shell)
	default:
		return nil, nil, fmt.Errorf("unknown shell %q: expected one of powershell, pwsh, cmd on windows (or empty for the default, powershell)", shell)
	}
}

// findShell looks the shell up on PATH first, so an operator can pin a
// version, then at its standard install location: a service started by the
// SCM may run with a PATH that lacks the PowerShell directories.
func findShell(name, standard string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil {
		return p, nil
	}
	if fi, serr := os.Stat(standard); serr == nil && !fi.IsDir() {
		return standard, nil
	}
	return "", fmt.Errorf("shell %s not found on this windows host (not on PATH, not at %s): %w", name, standard, err)
}

func systemRoot() string {
	if r := os.Getenv("SystemRoot"); r != "" {
		return r
	}
	return `C:\Windows`
}

func programFiles() string {
	if p := os.Getenv("ProgramFiles"); p != "" {
		return p
	}
	return `C:\Program Files`
}

// cmdCommand runs script with cmd.exe. The command line is passed verbatim:
// Go's argument quoting escapes quotes with backslashes, which cmd.exe does
// not understand, so `echo "a b"` would reach it mangled.
func cmdCommand(exe, script, tmpDir string) (*exec.Cmd, func(), error) {
	if !strings.ContainsAny(script, "\r\n") {
		cmd := exec.Command(exe)
		// /D skips AutoRun registry commands (they are not the operator's
		// script); /S makes cmd strip exactly the outer quotes and run the
		// rest as typed, whatever quotes the script itself contains.
		cmd.SysProcAttr = &syscall.SysProcAttr{
			CmdLine: `"` + exe + `" /D /S /C "` + script + `"`,
		}
		return cmd, func() {}, nil
	}
	// cmd /C runs one line only; a multi-line script becomes a batch file.
	body, err := batchFile(script, oemCodePage())
	if err != nil {
		return nil, nil, err
	}
	path, err := writeTemp(tmpDir, "kanade-*.cmd", body)
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(exe)
	// The doubled quotes survive /S even when the temp path contains spaces
	// or characters cmd treats specially (&, ^, parentheses).
	cmd.SysProcAttr = &syscall.SysProcAttr{
		CmdLine: `"` + exe + `" /D /S /C ""` + path + `""`,
	}
	return cmd, func() { _ = os.Remove(path) }, nil
}

// batchFile renders a multi-line cmd script as the bytes of a .cmd file.
// cmd.exe reads batch files in the console code page (the OEM code page for
// a fresh console), not UTF-8, so the script is converted to it. A character
// the code page cannot hold is an error rather than a silent '?': in cmd '?'
// is a wildcard, and `del C:\data\?.txt` is not what the operator wrote.
// Line endings become CRLF, which cmd's label and block parsing expect.
func batchFile(script string, codePage uint32) ([]byte, error) {
	text := "@echo off\r\n" + strings.ReplaceAll(strings.ReplaceAll(script, "\r\n", "\n"), "\n", "\r\n")
	if !strings.HasSuffix(text, "\r\n") {
		text += "\r\n"
	}
	if isASCII(text) || codePage == cpUTF8 {
		return []byte(text), nil
	}
	b, err := encodeCodePage(text, codePage)
	if err != nil {
		return nil, fmt.Errorf("cmd script: %w; use powershell or pwsh for scripts with such characters", err)
	}
	return b, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// cpUTF8 is CP_UTF8, which x/sys/windows does not define.
const cpUTF8 = 65001

// WideCharToMultiByte and GetOEMCP are not wrapped by x/sys/windows.
var (
	modkernel32             = windows.NewLazySystemDLL("kernel32.dll")
	procWideCharToMultiByte = modkernel32.NewProc("WideCharToMultiByte")
	procGetOEMCP            = modkernel32.NewProc("GetOEMCP")
)

func oemCodePage() uint32 {
	if err := procGetOEMCP.Find(); err != nil {
		return cpUTF8 // unreachable on real Windows; keep the text as is
	}
	cp, _, _ := procGetOEMCP.Call()
	return uint32(cp)
}

// encodeCodePage converts s to code page cp, failing if any character has no
// exact representation there.
func encodeCodePage(s string, cp uint32) ([]byte, error) {
	u := utf16.Encode([]rune(s))
	if len(u) == 0 {
		return nil, nil
	}
	const wcNoBestFitChars = 0x400 // no "similar looking" substitutes either
	var usedDefault int32
	n, _, err := procWideCharToMultiByte.Call(uintptr(cp), wcNoBestFitChars,
		uintptr(unsafe.Pointer(&u[0])), uintptr(len(u)), 0, 0, 0, uintptr(unsafe.Pointer(&usedDefault)))
	if n == 0 {
		return nil, fmt.Errorf("converting to code page %d: %w", cp, err)
	}
	out := make([]byte, n)
	usedDefault = 0
	n, _, err = procWideCharToMultiByte.Call(uintptr(cp), wcNoBestFitChars,
		uintptr(unsafe.Pointer(&u[0])), uintptr(len(u)), uintptr(unsafe.Pointer(&out[0])), n, 0, uintptr(unsafe.Pointer(&usedDefault)))
	if n == 0 {
		return nil, fmt.Errorf("converting to code page %d: %w", cp, err)
	}
	if usedDefault != 0 {
		return nil, fmt.Errorf("it contains characters that code page %d (the console code page cmd reads batch files in) cannot represent", cp)
	}
	return out[:n], nil
}

// psCommand runs script through a launcher .ps1 file. -File (not -Command)
// keeps the script's text away from command-line parsing and out of process
// lists, and -ExecutionPolicy Bypass lets an unsigned launcher run where the
// machine policy is RemoteSigned.
func psCommand(exe, script, tmpDir string) (*exec.Cmd, func(), error) {
	path, err := writeTemp(tmpDir, "kanade-*.ps1", psLauncher(script))
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(exe, "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-File", path)
	return cmd, func() { _ = os.Remove(path) }, nil
}

// psLauncher is the launcher's content: UTF-8 with a BOM, because Windows
// PowerShell 5.1 reads a BOM-less .ps1 in the ANSI code page and would
// mangle any non-ASCII character of the script.
//
// Before the script it switches the output encoding to UTF-8 (no BOM):
// [Console]::OutputEncoding governs what PowerShell writes to our pipes and
// how it decodes native programs' output, $OutputEncoding what it pipes into
// native programs. The console setter throws when there is no console, which
// must not stop the script, hence the try.
//
// After the script, the exit code of the last native program is passed on:
// with -File PowerShell exits 0 after a script that ends normally even when
// its last command failed, so `robocopy ...` or `cmd /c exit 6` as the last
// line would otherwise report success. A script's own `exit N` never reaches
// the trailer and keeps N.
func psLauncher(script string) []byte {
	var b strings.Builder
	b.WriteString("\uFEFF")
	b.WriteString("# kanade launcher: UTF-8 output, the script, then its exit code.\r\n")
	b.WriteString("try { [Console]::OutputEncoding = [Text.UTF8Encoding]::new($false) } catch { }\r\n")
	b.WriteString("$OutputEncoding = [Text.UTF8Encoding]::new($false)\r\n")
	b.WriteString(script)
	// The script may end in a comment or a line-continuation backtick; an
	// empty line ends either, so the trailer is a statement of its own.
	b.WriteString("\r\n\r\n")
	b.WriteString("if (Test-Path -LiteralPath variable:LASTEXITCODE) { exit $LASTEXITCODE }\r\n")
	b.WriteString("exit 0\r\n")
	return []byte(b.String())
}

func writeTemp(dir, pattern string, content []byte) (string, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", fmt.Errorf("creating launcher file: %w", err)
	}
	path := f.Name()
	_, werr := f.Write(content)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(path)
		return "", fmt.Errorf("writing launcher file %s: %w", path, err)
	}
	return path, nil
}

// jobTree is a Job Object holding every process of one run.
type jobTree struct {
	job windows.Handle
}

// startTree starts cmd inside a fresh Job Object. The child is created
// suspended and only resumed once it is in the job: a process it spawned
// before the assignment would not belong to the job and would survive a
// kill. KILL_ON_JOB_CLOSE ends the tree also when the agent itself dies and
// the kernel closes the handle.
func startTree(cmd *exec.Cmd) (tree, error) {
	job, err := windows.CreateJobObject(nil, nil)
	if err != nil {
		return nil, fmt.Errorf("creating job object: %w", err)
	}
	var info windows.JOBOBJECT_EXTENDED_LIMIT_INFORMATION
	info.BasicLimitInformation.LimitFlags = windows.JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
	if _, err := windows.SetInformationJobObject(job, windows.JobObjectExtendedLimitInformation,
		uintptr(unsafe.Pointer(&info)), uint32(unsafe.Sizeof(info))); err != nil {
		_ = windows.CloseHandle(job)
		return nil, fmt.Errorf("setting kill-on-close on job object: %w", err)
	}

	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// CREATE_NO_WINDOW gives console shells a hidden console of their own
	// (no window flashing on the user's desktop, and not the agent's console
	// in console mode, so a Ctrl-C meant for the agent does not hit
	// scripts); CREATE_NEW_PROCESS_GROUP keeps console control events for
	// the agent's group away from the script too.
	cmd.SysProcAttr.CreationFlags |= windows.CREATE_SUSPENDED | windows.CREATE_NEW_PROCESS_GROUP | windows.CREATE_NO_WINDOW
	if err := cmd.Start(); err != nil {
		_ = windows.CloseHandle(job)
		return nil, err
	}
	t := &jobTree{job: job}
	if err := assignAndResume(job, uint32(cmd.Process.Pid)); err != nil {
		// The child has not run a single instruction; it must not start
		// outside the job. Kill it and reap it (Wait also ends the output
		// copying goroutines).
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.close()
		return nil, err
	}
	return t, nil
}

func assignAndResume(job windows.Handle, pid uint32) error {
	// The pid cannot be reused yet: os/exec holds a handle to the process.
	proc, err := windows.OpenProcess(windows.PROCESS_SET_QUOTA|windows.PROCESS_TERMINATE, false, pid)
	if err != nil {
		return fmt.Errorf("opening child process %d: %w", pid, err)
	}
	defer windows.CloseHandle(proc)
	if err := windows.AssignProcessToJobObject(job, proc); err != nil {
		return fmt.Errorf("assigning child process %d to its job object: %w", pid, err)
	}
	return resumeThreads(pid)
}

// resumeThreads resumes the suspended primary thread of process pid. os/exec
// closes the thread handle CreateProcess returned, so the thread is found
// again through a ToolHelp snapshot. A freshly created suspended process has
// that one thread only.
func resumeThreads(pid uint32) error {
	snap, err := windows.CreateToolhelp32Snapshot(windows.TH32CS_SNAPTHREAD, 0)
	if err != nil {
		return fmt.Errorf("snapshotting threads: %w", err)
	}
	defer windows.CloseHandle(snap)
	te := windows.ThreadEntry32{Size: uint32(unsafe.Sizeof(windows.ThreadEntry32{}))}
	resumed := 0
	for err = windows.Thread32First(snap, &te); err == nil; err = windows.Thread32Next(snap, &te) {
		if te.OwnerProcessID != pid {
			continue
		}
		th, oerr := windows.OpenThread(windows.THREAD_SUSPEND_RESUME, false, te.ThreadID)
		if oerr != nil {
			return fmt.Errorf("opening thread %d of child process %d: %w", te.ThreadID, pid, oerr)
		}
		prev, rerr := windows.ResumeThread(th)
		_ = windows.CloseHandle(th)
		if rerr != nil {
			return fmt.Errorf("resuming thread %d of child process %d: %w", te.ThreadID, pid, rerr)
		}
		if prev == 0 {
			// The thread was already running: it may have spawned
			// processes outside the job. Never expected; refuse the run.
			return fmt.Errorf("thread %d of child process %d was running before it was assigned to its job", te.ThreadID, pid)
		}
		resumed++
	}
	if !errors.Is(err, windows.ERROR_NO_MORE_FILES) {
		return fmt.Errorf("enumerating threads: %w", err)
	}
	if resumed == 0 {
		return fmt.Errorf("child process %d has no thread to resume", pid)
	}
	return nil
}

// kill ends every process in the job. TerminateProcess, which this amounts
// to, is asynchronous: the processes are gone shortly after, and Wait on
// the shell observes it.
func (j *jobTree) kill() {
	if j.job != 0 {
		_ = windows.TerminateJobObject(j.job, 1)
	}
}

// close releases the job; with KILL_ON_JOB_CLOSE that also kills anything
// still in it. Calling it again does nothing.
func (j *jobTree) close() {
	if j.job != 0 {
		_ = windows.CloseHandle(j.job)
		j.job = 0
	}
}

// exitCode returns the process exit code as Windows tools show it
// (%ERRORLEVEL%, $LASTEXITCODE): a 32-bit value read as signed, so NTSTATUS
// codes above 2^31 come out negative, e.g. 0xC000013A (STATUS_CONTROL_C_EXIT)
// as -1073741510. A process that exits with 0xFFFFFFFF therefore reports -1,
// the value kanade also uses for killed runs; Result.Killed and
// Result.TimedOut tell them apart.
func exitCode(ee *exec.ExitError) int {
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok {
		return int(int32(ws.ExitCode))
	}
	return ee.ExitCode()
}
