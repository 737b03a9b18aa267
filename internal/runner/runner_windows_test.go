//go:build windows

// These tests run on Windows and, from Linux, under Wine:
//
//	GOOS=windows GOARCH=amd64 go test -exec "$PWD/test/wine/exec.sh" ./internal/runner/
//
// Grandchildren are copies of the test binary itself (TestHelperProcess), so
// the tests need nothing but cmd.exe from the system.

package runner

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
	"unsafe"

	"golang.org/x/sys/windows"

	"github.com/kanade-project/kanade/internal/winetest"
)

// tempDir is t.TempDir that also cleans up under Wine (see winetest.TempDir).
func tempDir(t *testing.T) string { return winetest.TempDir(t) }

// TestHelperProcess is not a test: started as
// `runner.test.exe -test.run=^TestHelperProcess$ kanade-helper sleep PIDFILE`
// it records its pid in PIDFILE and sleeps for a minute, standing in for a
// long-running program a script started.
func TestHelperProcess(t *testing.T) {
	args := flag.Args()
	if len(args) < 1 || args[0] != "kanade-helper" {
		t.Skip("helper process for other tests")
	}
	if len(args) != 3 || args[1] != "sleep" {
		fmt.Fprintf(os.Stderr, "helper: bad arguments %q\n", args)
		os.Exit(2)
	}
	pidFile := args[2]
	// Written under a temporary name and renamed, so a reader never sees a
	// half-written pid.
	tmp := pidFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	if err := os.Rename(tmp, pidFile); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	time.Sleep(time.Minute)
	os.Exit(0)
}

// helperCommand is the cmd.exe command line fragment that starts a sleeping
// helper recording its pid in pidFile.
func helperCommand(t *testing.T, pidFile string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Quoted, so cmd's escape character ^ and the $ reach the binary as is.
	return fmt.Sprintf(`"%s" "-test.run=^TestHelperProcess$" kanade-helper sleep "%s"`, exe, pidFile)
}

func readPid(t *testing.T, pidFile string) uint32 {
	t.Helper()
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the grandchild never recorded its pid: %v", err)
	}
	pid, err := strconv.ParseUint(string(b), 10, 32)
	if err != nil {
		t.Fatalf("pid file %q: %v", b, err)
	}
	return uint32(pid)
}

func waitForFile(ctx context.Context, path string) error {
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// assertGone fails unless process pid has exited (or no longer exists)
// within a few seconds: TerminateJobObject is asynchronous.
func assertGone(t *testing.T, pid uint32) {
	t.Helper()
	h, err := windows.OpenProcess(windows.SYNCHRONIZE|windows.PROCESS_QUERY_LIMITED_INFORMATION, false, pid)
	if err != nil {
		return // no such process any more
	}
	defer windows.CloseHandle(h)
	ev, err := windows.WaitForSingleObject(h, 5000)
	if err != nil {
		t.Fatalf("waiting for process %d: %v", pid, err)
	}
	if ev != windows.WAIT_OBJECT_0 {
		t.Fatalf("process %d of the run's tree is still alive after the run ended", pid)
	}
}

func run(t *testing.T, spec Spec) Result {
	t.Helper()
	if spec.TempDir == "" {
		spec.TempDir = tempDir(t)
	}
	res, err := Run(context.Background(), spec)
	if err != nil {
		t.Fatalf("Run(%+v): %v", spec, err)
	}
	return res
}

func TestCmdEchoAndExitCode(t *testing.T) {
	res := run(t, Spec{Shell: "cmd", Script: "echo hello&exit /b 3"})
	if got := strings.TrimSpace(res.Stdout); got != "hello" {
		t.Errorf("stdout = %q, want hello", res.Stdout)
	}
	if res.ExitCode != 3 {
		t.Errorf("exit code = %d, want 3 (stderr %q)", res.ExitCode, res.Stderr)
	}
	if res.TimedOut || res.Killed {
		t.Errorf("TimedOut=%v Killed=%v for a script that exited by itself", res.TimedOut, res.Killed)
	}
}

// Go's own argument quoting would turn the quotes into \" sequences that
// cmd.exe does not understand; the verbatim command line keeps them.
func TestCmdCommandLineIsVerbatim(t *testing.T) {
	res := run(t, Spec{Shell: "cmd", Script: `echo "a & b | <c>"`})
	if got := strings.TrimSpace(res.Stdout); got != `"a & b | <c>"` {
		t.Errorf("stdout = %q, want the quoted text as typed", res.Stdout)
	}
	if res.ExitCode != 0 {
		t.Errorf("exit code = %d, want 0 (stderr %q)", res.ExitCode, res.Stderr)
	}
}

func TestCmdMultiLineScript(t *testing.T) {
	tmp := tempDir(t)
	res := run(t, Spec{Shell: "cmd", Script: "echo one\necho two\nexit /b 5", TempDir: tmp})
	if res.Stdout != "one\r\ntwo\r\n" {
		t.Errorf("stdout = %q, want the two lines without the commands echoed", res.Stdout)
	}
	if res.ExitCode != 5 {
		t.Errorf("exit code = %d, want 5 (stderr %q)", res.ExitCode, res.Stderr)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("temp batch file not removed: %v", left)
	}
}

// Exit codes are 32-bit; NTSTATUS-style values read as negative, as
// %ERRORLEVEL% shows them.
func TestCmdNegativeExitCode(t *testing.T) {
	res := run(t, Spec{Shell: "cmd", Script: "exit /b -1073741510"})
	if res.ExitCode != -1073741510 {
		t.Errorf("exit code = %d, want -1073741510 (0xC000013A)", res.ExitCode)
	}
}

// Bytes that are not UTF-8 (here CP932 and stray 0xFF) are replaced, and
// everything around them is kept.
func TestCmdInvalidUTF8Output(t *testing.T) {
	dir := tempDir(t)
	f := filepath.Join(dir, "bytes.txt")
	content := []byte("head \xff\xfe\x82\xa0 tail\r\nsecond line\r\n")
	if err := os.WriteFile(f, content, 0o644); err != nil {
		t.Fatal(err)
	}
	res := run(t, Spec{Shell: "cmd", Script: fmt.Sprintf(`type "%s"`, f)})
	if !utf8.ValidString(res.Stdout) {
		t.Fatalf("stdout is not valid UTF-8: %q", res.Stdout)
	}
	for _, want := range []string{"head ", "\uFFFD", " tail\r\n", "second line\r\n"} {
		if !strings.Contains(res.Stdout, want) {
			t.Errorf("stdout %q lacks %q", res.Stdout, want)
		}
	}
	if res.StdoutSize != int64(len(content)) {
		t.Errorf("StdoutSize = %d, want %d raw bytes", res.StdoutSize, len(content))
	}
}

// stdin is the null device: a script that reads input gets end of file at
// once instead of hanging until its timeout.
func TestCmdStdinIsEmpty(t *testing.T) {
	res := run(t, Spec{Shell: "cmd", Script: "set /p answer=question? & echo done", Timeout: 30 * time.Second})
	if res.TimedOut {
		t.Fatal("a script reading stdin hung until its timeout")
	}
	if !strings.Contains(res.Stdout, "done") {
		t.Errorf("stdout = %q, want it to contain done", res.Stdout)
	}
}

// A timeout kills the whole tree, not just the shell: the helper cmd.exe
// started must be gone too.
func TestTimeoutKillsGrandchild(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(tempDir(t), "pid")
	start := time.Now()
	res := run(t, Spec{Shell: "cmd", Script: helperCommand(t, pidFile), Timeout: 6 * time.Second})
	if !res.TimedOut || res.ExitCode != -1 {
		t.Fatalf("TimedOut=%v ExitCode=%d, want a timeout with -1 (stdout %q stderr %q)", res.TimedOut, res.ExitCode, res.Stdout, res.Stderr)
	}
	if !strings.Contains(res.Stderr, "timed out after 6s") {
		t.Errorf("stderr = %q, want the timeout reason", res.Stderr)
	}
	// The helper sleeps a minute; returning long before that means nobody
	// waited for it.
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("Run took %s; the tree was not killed at the timeout", d)
	}
	assertGone(t, readPid(t, pidFile))
}

// Cancelling the context kills the tree and reports the cause.
func TestCancelKillsGrandchild(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(tempDir(t), "pid")
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	go func() {
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		defer wcancel()
		_ = waitForFile(wctx, pidFile)
		cancel(errors.New("kill.exec-42"))
	}()
	res, err := Run(ctx, Spec{Shell: "cmd", Script: helperCommand(t, pidFile), TempDir: tempDir(t), Timeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Killed || res.ExitCode != -1 {
		t.Fatalf("Killed=%v ExitCode=%d, want a kill with -1 (stderr %q)", res.Killed, res.ExitCode, res.Stderr)
	}
	if !strings.Contains(res.Stderr, "killed: kill.exec-42") {
		t.Errorf("stderr = %q, want the cancellation cause", res.Stderr)
	}
	assertGone(t, readPid(t, pidFile))
}

// A script that starts a background program and exits at once must not
// leave it running: the end of the run closes the job.
func TestScriptExitKillsDetachedGrandchild(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(tempDir(t), "pid")
	// The loop waits until the helper has recorded its pid, so the test
	// knows which process to check.
	script := fmt.Sprintf("start \"\" /b %s\n:wait\nif not exist \"%s\" goto wait\nexit /b 0", helperCommand(t, pidFile), pidFile)
	start := time.Now()
	res := run(t, Spec{Shell: "cmd", Script: script, Timeout: time.Minute})
	if res.TimedOut || res.ExitCode != 0 {
		t.Fatalf("TimedOut=%v ExitCode=%d, want 0 (stdout %q stderr %q)", res.TimedOut, res.ExitCode, res.Stdout, res.Stderr)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("Run took %s; it waited for the background program", d)
	}
	assertGone(t, readPid(t, pidFile))
}

// jobProcessIDList is JOBOBJECT_BASIC_PROCESS_ID_LIST with room for 64 pids.
type jobProcessIDList struct {
	NumberOfAssignedProcesses uint32
	NumberOfProcessIdsInList  uint32
	ProcessIDList             [64]uintptr
}

func jobPids(t *testing.T, job windows.Handle) []uint32 {
	t.Helper()
	var l jobProcessIDList
	if err := windows.QueryInformationJobObject(job, windows.JobObjectBasicProcessIdList,
		uintptr(unsafe.Pointer(&l)), uint32(unsafe.Sizeof(l)), nil); err != nil {
		t.Fatalf("QueryInformationJobObject: %v", err)
	}
	pids := make([]uint32, 0, l.NumberOfProcessIdsInList)
	for _, p := range l.ProcessIDList[:l.NumberOfProcessIdsInList] {
		pids = append(pids, uint32(p))
	}
	return pids
}

func containsPid(pids []uint32, pid uint32) bool {
	for _, p := range pids {
		if p == pid {
			return true
		}
	}
	return false
}

// The shell is in the job as soon as startTree returns (it was assigned
// while suspended), and what it starts is in the job too.
func TestStartTreeAssignsShellAndDescendants(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(tempDir(t), "pid")
	cmd, cleanup, err := buildCommand("cmd", helperCommand(t, pidFile), tempDir(t))
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	tr, err := startTree(cmd)
	if err != nil {
		t.Fatal(err)
	}
	job := tr.(*jobTree).job
	shellPid := uint32(cmd.Process.Pid)
	if pids := jobPids(t, job); !containsPid(pids, shellPid) {
		t.Fatalf("job holds %v right after start, want the shell %d in it", pids, shellPid)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := waitForFile(ctx, pidFile); err != nil {
		tr.kill()
		_ = cmd.Wait()
		t.Fatalf("helper did not start: %v (output %q)", err, out.String())
	}
	helperPid := readPid(t, pidFile)
	if pids := jobPids(t, job); !containsPid(pids, helperPid) {
		t.Errorf("job holds %v, want the grandchild %d in it", pids, helperPid)
	}
	tr.kill()
	assertGone(t, helperPid)
	if err := cmd.Wait(); err == nil {
		t.Error("shell exited cleanly after the job was terminated")
	}
	tr.close()
	tr.close() // idempotent
	tr.kill()  // harmless after close
}

// Closing the job without an explicit kill also ends the tree
// (KILL_ON_JOB_CLOSE), which is what happens when the agent itself dies.
func TestCloseKillsTree(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(tempDir(t), "pid")
	cmd, cleanup, err := buildCommand("cmd", helperCommand(t, pidFile), tempDir(t))
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	tr, err := startTree(cmd)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := waitForFile(ctx, pidFile); err != nil {
		tr.kill()
		_ = cmd.Wait()
		t.Fatalf("helper did not start: %v", err)
	}
	tr.close()
	waitDone := make(chan error, 1)
	go func() { waitDone <- cmd.Wait() }()
	select {
	case <-waitDone:
	case <-time.After(30 * time.Second):
		t.Fatal("closing the job did not end the shell")
	}
	assertGone(t, readPid(t, pidFile))
}

func TestShellErrors(t *testing.T) {
	for _, tc := range []struct {
		shell string
		want  string
	}{
		{"sh", "shell sh is not available on windows; use powershell, pwsh or cmd"},
		{"bash", "shell bash is not available on windows; use powershell, pwsh or cmd"},
		{"zsh", `unknown shell "zsh": expected one of powershell, pwsh, cmd`},
	} {
		_, err := Run(context.Background(), Spec{Shell: tc.shell, Script: "echo hi", TempDir: tempDir(t)})
		if !errors.Is(err, ErrSpawn) {
			t.Errorf("shell %s: err = %v, want ErrSpawn", tc.shell, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("shell %s: err = %q, want it to say %q", tc.shell, err, tc.want)
		}
	}
}

func TestFindShellNamesMissingShell(t *testing.T) {
	_, err := findShell("kanade-no-such-shell", filepath.Join(tempDir(t), "nope.exe"))
	if err == nil || !strings.Contains(err.Error(), "shell kanade-no-such-shell not found") {
		t.Errorf("err = %v, want it to name the missing shell", err)
	}
}

func TestBatchFile(t *testing.T) {
	for _, tc := range []struct {
		name     string
		script   string
		codePage uint32
		want     string
		wantErr  string
	}{
		{name: "crlf", script: "echo a\necho b", codePage: 437, want: "@echo off\r\necho a\r\necho b\r\n"},
		{name: "already crlf", script: "echo a\r\necho b\r\n", codePage: 437, want: "@echo off\r\necho a\r\necho b\r\n"},
		{name: "oem 437", script: "echo caf\u00e9\necho x", codePage: 437, want: "@echo off\r\necho caf\x82\r\necho x\r\n"},
		{name: "oem 932", script: "echo \u3042\necho x", codePage: 932, want: "@echo off\r\necho \x82\xa0\r\necho x\r\n"},
		{name: "utf-8 console", script: "echo \u3042\n", codePage: cpUTF8, want: "@echo off\r\necho \u3042\r\n"},
		{name: "not representable", script: "del C:\\data\\\u3042.txt\necho x", codePage: 437, wantErr: "code page 437"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := batchFile(tc.script, tc.codePage)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %q (got %q)", err, tc.wantErr, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("batchFile = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPSLauncher(t *testing.T) {
	script := "Write-Output 'h\u00e9'\n# ends in a comment"
	got := string(psLauncher(script))
	if !strings.HasPrefix(got, "\xef\xbb\xbf") {
		t.Error("launcher lacks the UTF-8 BOM Windows PowerShell needs")
	}
	enc := strings.Index(got, "[Console]::OutputEncoding = [Text.UTF8Encoding]::new($false)")
	outEnc := strings.Index(got, "$OutputEncoding = [Text.UTF8Encoding]::new($false)")
	body := strings.Index(got, script)
	trailer := strings.Index(got, "\r\nif (Test-Path -LiteralPath variable:LASTEXITCODE) { exit $LASTEXITCODE }\r\nexit 0\r\n")
	if enc < 0 || outEnc < 0 || body < 0 || trailer < 0 {
		t.Fatalf("launcher misses a part:\n%s", got)
	}
	if !(enc < body && outEnc < body && body < trailer) {
		t.Errorf("launcher parts out of order:\n%s", got)
	}
	if !strings.HasSuffix(got, "exit 0\r\n") {
		t.Errorf("launcher does not end with the exit trailer:\n%s", got)
	}
}

// realPowerShell returns shell if it is installed and actually runs
// PowerShell code. Wine ships a powershell.exe stub that prints nothing and
// exits 0, which would make every assertion below meaningless.
func realPowerShell(t *testing.T, shell string) {
	t.Helper()
	if _, _, err := buildCommand(shell, "", tempDir(t)); err != nil {
		t.Skipf("%s is not installed: %v", shell, err)
	}
	res, err := Run(context.Background(), Spec{Shell: shell, Script: "Write-Output ('kanade' + '-probe')", TempDir: tempDir(t), Timeout: time.Minute})
	if err != nil {
		t.Skipf("%s does not start: %v", shell, err)
	}
	if !strings.Contains(res.Stdout, "kanade-probe") {
		t.Skipf("%s is present but does not run PowerShell code (Wine ships only a stub): stdout %q, exit %d", shell, res.Stdout, res.ExitCode)
	}
}

func TestPowerShell(t *testing.T) {
	for _, shell := range []string{"powershell", "pwsh"} {
		t.Run(shell, func(t *testing.T) {
			realPowerShell(t, shell)
			tmp := tempDir(t)
			res := run(t, Spec{Shell: shell, Script: "Write-Output 'h\u00e9llo \u3042'\nexit 4", TempDir: tmp})
			if got := strings.TrimSpace(res.Stdout); got != "h\u00e9llo \u3042" {
				t.Errorf("stdout = %q, want UTF-8 text", res.Stdout)
			}
			if res.ExitCode != 4 {
				t.Errorf("exit code = %d, want 4 (stderr %q)", res.ExitCode, res.Stderr)
			}
			res = run(t, Spec{Shell: shell, Script: "Write-Output before\ncmd /c exit 6", TempDir: tmp})
			if res.ExitCode != 6 {
				t.Errorf("last native exit code not propagated: %d, want 6 (stderr %q)", res.ExitCode, res.Stderr)
			}
			res = run(t, Spec{Shell: shell, Script: "Write-Output fine", TempDir: tmp})
			if res.ExitCode != 0 {
				t.Errorf("exit code = %d, want 0 (stderr %q)", res.ExitCode, res.Stderr)
			}
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Errorf("launcher files not removed: %v", left)
			}
		})
	}
}

func TestDefaultShellIsPowerShell(t *testing.T) {
	if DefaultShell() != "powershell" {
		t.Errorf("DefaultShell() = %q", DefaultShell())
	}
}
