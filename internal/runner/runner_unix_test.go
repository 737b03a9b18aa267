//go:build !windows

package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

// runGuard is how long a test lets Run take before declaring it hung. Every
// script that is not meant to be killed finishes in milliseconds; the ones
// that are killed sleep 300 s, so returning at all proves the kill worked.
const runGuard = 60 * time.Second

// runOrFail runs spec and fails the test, instead of hanging the whole
// binary, if Run does not return within runGuard.
func runOrFail(t *testing.T, ctx context.Context, spec Spec) (Result, error) {
	t.Helper()
	type outcome struct {
		res Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := Run(ctx, spec)
		done <- outcome{res, err}
	}()
	guard := time.NewTimer(runGuard)
	defer guard.Stop()
	select {
	case o := <-done:
		return o.res, o.err
	case <-guard.C:
		t.Fatalf("Run(%q) did not return within %s", spec.Script, runGuard)
		return Result{}, nil
	}
}

// mustRun is runOrFail for runs that must start.
func mustRun(t *testing.T, ctx context.Context, spec Spec) Result {
	t.Helper()
	res, err := runOrFail(t, ctx, spec)
	if err != nil {
		t.Fatalf("Run(%q): %v", spec.Script, err)
	}
	if res.StartedAt.IsZero() || res.FinishedAt.Before(res.StartedAt) ||
		res.StartedAt.Location() != time.UTC || res.FinishedAt.Location() != time.UTC {
		t.Errorf("StartedAt %v / FinishedAt %v must be set, in UTC and ordered", res.StartedAt, res.FinishedAt)
	}
	return res
}

// processAlive reports whether pid is a live process. A zombie (state Z or
// X in /proc/<pid>/stat) has already died: it only waits to be reaped, and
// in a container PID 1 may never reap the orphans it inherits.
func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		// No /proc (non-Linux Unix): Kill(0) said it exists.
		return !errors.Is(err, os.ErrNotExist) || !procMounted()
	}
	// The command name in parentheses may contain spaces; the state is
	// the first field after the last ')'.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 || i+2 >= len(stat) {
		return true
	}
	switch stat[i+2] {
	case 'Z', 'X', 'x':
		return false
	}
	return true
}

func procMounted() bool {
	_, err := os.Stat("/proc/self/stat")
	return err == nil
}

// requireAllDead polls until none of pids is alive, failing the test when
// one survives the deadline.
func requireAllDead(t *testing.T, what string, pids map[string]int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var alive []string
		for name, pid := range pids {
			if processAlive(pid) {
				alive = append(alive, fmt.Sprintf("%s (pid %d)", name, pid))
			}
		}
		if len(alive) == 0 {
			return
		}
		if time.Now().After(deadline) {
			// Don't leak the survivors, nor their unrecorded siblings,
			// past the test: kill their process groups (never ours).
			own := syscall.Getpgrp()
			for _, pid := range pids {
				if pgid, err := syscall.Getpgid(pid); err == nil && pgid > 1 && pgid != own {
					_ = syscall.Kill(-pgid, syscall.SIGKILL)
				}
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			t.Fatalf("%s: processes of the run survived it: %s", what, strings.Join(alive, ", "))
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}

// readPidFiles parses the pid each file holds ("1234\n").
func readPidFiles(t *testing.T, files map[string]string) map[string]int {
	t.Helper()
	pids := make(map[string]int, len(files))
	for name, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("pid file of %s: %v (the script did not get that far)", name, err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 1 {
			t.Fatalf("pid file of %s holds %q", name, b)
		}
		pids[name] = pid
	}
	return pids
}

// pidFilesReady reports whether every file holds a complete line.
func pidFilesReady(files map[string]string) bool {
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil || !strings.HasSuffix(string(b), "\n") {
			return false
		}
	}
	return true
}

// treeScript starts a shell that records its own pid, a child shell's pid
// and a grandchild's pid, then waits on 300 s sleeps.
func treeScript(t *testing.T) (script string, files map[string]string) {
	dir := t.TempDir()
	files = map[string]string{
		"script shell":  filepath.Join(dir, "shell.pid"),
		"child shell":   filepath.Join(dir, "child.pid"),
		"grandchild":    filepath.Join(dir, "grandchild.pid"),
		"sibling sleep": filepath.Join(dir, "sibling.pid"),
	}
	script = fmt.Sprintf(`echo $$ > '%s'
sh -c 'sleep 300 & echo $! > "$1"; sleep 300' inner '%s' &
echo $! > '%s'
sleep 300 &
echo $! > '%s'
wait`, files["script shell"], files["grandchild"], files["child shell"], files["sibling sleep"])
	return script, files
}

func TestRunBasics(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		spec       Spec
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"stdout and stderr are separate", Spec{Shell: "sh", Script: "echo out; echo err >&2"}, 0, "out\n", "err\n"},
		{"exit code 0", Spec{Shell: "sh", Script: "true"}, 0, "", ""},
		{"exit code 3", Spec{Shell: "sh", Script: "echo partial; exit 3"}, 3, "partial\n", ""},
		{"killed by a signal reports 128+signal", Spec{Shell: "sh", Script: "kill -TERM $$"}, 128 + 15, "", ""},
		{"multi-line script", Spec{Script: "a=1\nb=2\necho $((a+b))"}, 0, "3\n", ""},
		{"stdin is empty, cat ends at once", Spec{Script: "cat; echo eof", Timeout: 10 * time.Second}, 0, "eof\n", ""},
		{"read from stdin fails instead of hanging", Spec{Script: "read x || echo no-input", Timeout: 10 * time.Second}, 0, "no-input\n", ""},
		{"invalid UTF-8 bytes are replaced, text kept", Spec{Script: `printf 'ok\377\376 still here\n'`}, 0, "ok\uFFFD still here\n", ""},
		{"CP932 bytes in stderr are replaced, text kept", Spec{Script: `printf 'err \223\214\213\236 end' >&2`}, 0, "", "err \uFFFD end"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := mustRun(t, context.Background(), tt.spec)
			if res.ExitCode != tt.wantCode {
				t.Errorf("ExitCode = %d, want %d (stderr %q)", res.ExitCode, tt.wantCode, res.Stderr)
			}
			if res.Stdout != tt.wantStdout {
				t.Errorf("Stdout = %q, want %q", res.Stdout, tt.wantStdout)
			}
			if res.Stderr != tt.wantStderr {
				t.Errorf("Stderr = %q, want %q", res.Stderr, tt.wantStderr)
			}
			if !utf8.ValidString(res.Stdout) || !utf8.ValidString(res.Stderr) {
				t.Errorf("output must be valid UTF-8: %q %q", res.Stdout, res.Stderr)
			}
			if res.TimedOut || res.Killed {
				t.Errorf("a run that ended on its own must not be TimedOut (%v) or Killed (%v)", res.TimedOut, res.Killed)
			}
			if !strings.Contains(tt.wantStdout, "\uFFFD") && res.StdoutSize != int64(len(tt.wantStdout)) {
				t.Errorf("StdoutSize = %d, want %d", res.StdoutSize, len(tt.wantStdout))
			}
		})
	}
}

func TestRunDefaultShellIsSh(t *testing.T) {
	t.Parallel()
	if DefaultShell() != "sh" {
		t.Errorf("DefaultShell() = %q, want sh on Unix", DefaultShell())
	}
	res := mustRun(t, context.Background(), Spec{Script: `echo "$0"`})
	if got := filepath.Base(strings.TrimSpace(res.Stdout)); got != "sh" {
		t.Errorf("an empty Shell must run sh, $0 = %q", res.Stdout)
	}
}

func TestRunBash(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not installed")
	}
	res := mustRun(t, context.Background(), Spec{Shell: "bash", Script: `[[ -n $BASH_VERSION ]] && echo "bash ${BASH_VERSINFO[0]}"`})
	if res.ExitCode != 0 || !strings.HasPrefix(res.Stdout, "bash ") {
		t.Errorf("Shell bash must run bash: exit %d, stdout %q, stderr %q", res.ExitCode, res.Stdout, res.Stderr)
	}
}

func TestRunDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	res := mustRun(t, context.Background(), Spec{Script: "pwd -P", Dir: dir})
	want, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(res.Stdout); got != want {
		t.Errorf("the script must run in Dir: pwd = %q, want %q", got, want)
	}
}

type spawnErrorCase struct {
	name     string
	spec     Spec
	wantMsgs []string
}

func TestRunSpawnErrors(t *testing.T) {
	t.Parallel()
	tests := []spawnErrorCase{
		{"unknown shell names the valid ones", Spec{Shell: "fish", Script: "echo"},
			[]string{`"fish"`, "powershell", "pwsh", "cmd", "sh", "bash"}},
		{"cmd is Windows-only and the message says what to use", Spec{Shell: "cmd", Script: "echo"},
			[]string{"cmd", "Windows", "sh or bash"}},
		{"missing working directory is named as such", Spec{Script: "echo", Dir: filepath.Join(t.TempDir(), "missing")},
			[]string{"working directory", "missing", "no such file"}},
		{"working directory that is a file", Spec{Script: "echo", Dir: "/dev/null"},
			[]string{"working directory", "/dev/null", "not a directory"}},
	}
	if _, err := exec.LookPath("pwsh"); err != nil {
		tests = append(tests, spawnErrorCase{"powershell without pwsh installed", Spec{Shell: "powershell", Script: "echo"}, []string{"pwsh"}})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runOrFail(t, context.Background(), tt.spec)
			if !errors.Is(err, ErrSpawn) {
				t.Fatalf("error must wrap ErrSpawn so it is reported as a spawn failure, got %v", err)
			}
			for _, m := range tt.wantMsgs {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error must mention %q: %v", m, err)
				}
			}
		})
	}
}

func TestRunTimeoutKillsTree(t *testing.T) {
	t.Parallel()
	script, files := treeScript(t)
	res := mustRun(t, context.Background(), Spec{Script: script, Timeout: 2 * time.Second})
	if res.ExitCode != -1 || !res.TimedOut || res.Killed {
		t.Errorf("a timed-out run reports ExitCode -1 (got %d), TimedOut (got %v), not Killed (got %v)",
			res.ExitCode, res.TimedOut, res.Killed)
	}
	if !strings.Contains(res.Stderr, "timed out") {
		t.Errorf("stderr must give the reason, got %q", res.Stderr)
	}
	requireAllDead(t, "timeout", readPidFiles(t, files))
}

func TestRunCancelKillsTreeWithCause(t *testing.T) {
	t.Parallel()
	script, files := treeScript(t)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)

	type outcome struct {
		res Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := runOrFail(t, ctx, Spec{Script: script})
		done <- outcome{res, err}
	}()
	// Kill once the whole tree exists, so the test proves the kill reaches
	// every level rather than racing the spawns.
	deadline := time.Now().Add(10 * time.Second)
	for !pidFilesReady(files) {
		if time.Now().After(deadline) {
			cancel(errors.New("test gave up"))
			t.Fatal("the script never wrote its pid files")
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	cancel(errors.New("operator kill"))
	o := <-done
	if o.err != nil {
		t.Fatal(o.err)
	}
	if o.res.ExitCode != -1 || !o.res.Killed || o.res.TimedOut {
		t.Errorf("a cancelled run reports ExitCode -1 (got %d), Killed (got %v), not TimedOut (got %v)",
			o.res.ExitCode, o.res.Killed, o.res.TimedOut)
	}
	if !strings.Contains(o.res.Stderr, "operator kill") {
		t.Errorf("stderr must carry the cancellation cause, got %q", o.res.Stderr)
	}
	requireAllDead(t, "cancel", readPidFiles(t, files))
}

func TestRunCancelWithoutCause(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := mustRun(t, ctx, Spec{Script: "sleep 300"})
	if res.ExitCode != -1 || !res.Killed {
		t.Errorf("a run under a cancelled context is killed: ExitCode %d, Killed %v", res.ExitCode, res.Killed)
	}
	if !strings.Contains(res.Stderr, "killed") || strings.Contains(res.Stderr, "context canceled") {
		t.Errorf("a plain cancel reports \"killed\" without Go's context text, got %q", res.Stderr)
	}
}

// TestRunBackgroundChildHoldingStdout: the shell exits while a grandchild
// still holds stdout open. Run must return the shell's status and output
// rather than wait for the grandchild, and kill the grandchild.
func TestRunBackgroundChildHoldingStdout(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "bg.pid")
	script := fmt.Sprintf("sleep 300 &\necho $! > '%s'\necho done", pidFile)
	res := mustRun(t, context.Background(), Spec{Script: script})
	if res.ExitCode != 0 || res.Stdout != "done\n" || res.TimedOut || res.Killed {
		t.Errorf("want exit 0 with stdout \"done\\n\", got exit %d stdout %q stderr %q timedOut %v killed %v",
			res.ExitCode, res.Stdout, res.Stderr, res.TimedOut, res.Killed)
	}
	requireAllDead(t, "shell exit", readPidFiles(t, map[string]string{"background sleep": pidFile}))
}

func TestRunBackgroundChildHoldingStdoutNonZeroExit(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "bg.pid")
	script := fmt.Sprintf("sleep 300 &\necho $! > '%s'\necho bye; exit 5", pidFile)
	res := mustRun(t, context.Background(), Spec{Script: script})
	if res.ExitCode != 5 || res.Stdout != "bye\n" {
		t.Errorf("the shell's own exit code must survive a lingering grandchild: exit %d stdout %q stderr %q",
			res.ExitCode, res.Stdout, res.Stderr)
	}
	requireAllDead(t, "shell exit 5", readPidFiles(t, map[string]string{"background sleep": pidFile}))
}

func TestRunLargeOutputIsCapped(t *testing.T) {
	t.Parallel()
	const total = 20 << 20 // 20 MiB
	script := fmt.Sprintf(`printf HEAD; head -c %d /dev/zero | tr '\0' a; printf TAIL`, total-8)
	res := mustRun(t, context.Background(), Spec{Script: script})
	if res.ExitCode != 0 {
		t.Fatalf("exit %d, stderr %q", res.ExitCode, res.Stderr)
	}
	if res.StdoutSize != total {
		t.Errorf("StdoutSize = %d, want every byte written (%d)", res.StdoutSize, total)
	}
	marker := fmt.Sprintf("\n…[kanade: %d bytes omitted]…\n", total-OutputCap)
	if len(res.Stdout) != OutputCap+len(marker) {
		t.Errorf("len(Stdout) = %d, want OutputCap (%d) plus the marker (%d)", len(res.Stdout), OutputCap, len(marker))
	}
	if !strings.HasPrefix(res.Stdout, "HEADaaaa") {
		t.Errorf("Stdout must start with the head of the stream, got %q", res.Stdout[:min(16, len(res.Stdout))])
	}
	if !strings.HasSuffix(res.Stdout, "aaaaTAIL") {
		t.Errorf("Stdout must end with the tail of the stream, got %q", res.Stdout[max(0, len(res.Stdout)-16):])
	}
	if i := strings.Index(res.Stdout, marker); i != OutputCap/2 {
		t.Errorf("the marker %q must sit right after the %d head bytes, found at %d", marker, OutputCap/2, i)
	}
	filler := strings.Repeat("a", OutputCap/2-4)
	if want := "HEAD" + filler + marker + filler + "TAIL"; res.Stdout != want {
		t.Errorf("Stdout differs from the first %d bytes + marker + last %d bytes of the stream", OutputCap/2, OutputCap/2)
	}
}

func TestRunOutputCapOverride(t *testing.T) {
	t.Parallel()
	res := mustRun(t, context.Background(), Spec{Script: "printf 0123456789; printf abcdefghij >&2", OutputCap: 4})
	if want := "01\n…[kanade: 6 bytes omitted]…\n89"; res.Stdout != want {
		t.Errorf("Stdout = %q, want %q", res.Stdout, want)
	}
	if want := "ab\n…[kanade: 6 bytes omitted]…\nij"; res.Stderr != want {
		t.Errorf("each stream is capped on its own: Stderr = %q, want %q", res.Stderr, want)
	}
	if res.StdoutSize != 10 || res.StderrSize != 10 {
		t.Errorf("sizes count every byte: %d, %d", res.StdoutSize, res.StderrSize)
	}
}
