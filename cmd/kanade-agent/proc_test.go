//go:build linux

package main_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// agentProc is a real kanade-agent process that a test can kill -9 and
// restart on the same data dir.
type agentProc struct {
	t       *testing.T
	bin     string
	cfg     string
	id      string
	dataDir string

	mu     sync.Mutex
	logs   bytes.Buffer
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

func (p *agentProc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.Write(b)
}

// Logs returns everything the agent logged across restarts.
func (p *agentProc) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

func newAgentProc(t *testing.T, bin, id, url string) *agentProc {
	t.Helper()
	dataDir := t.TempDir()
	p := &agentProc{t: t, bin: bin, id: id, dataDir: dataDir, cfg: writeConfig(t, id, url, dataDir)}
	p.start()
	t.Cleanup(func() {
		p.kill9()
		if t.Failed() {
			t.Logf("%s log:\n%s", id, p.Logs())
		}
	})
	return p
}

func (p *agentProc) start() {
	p.t.Helper()
	cmd := exec.Command(p.bin, "--config", p.cfg)
	cmd.Stdout, cmd.Stderr = p, p
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	exited := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(exited)
	}()
}

// running reports whether the current process is still alive.
func (p *agentProc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *agentProc) kill9() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// stop asks the agent to stop (SIGTERM) and waits for a clean exit.
func (p *agentProc) stop() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.t.Fatalf("%s did not stop", p.id)
	}
	if p.err != nil {
		p.t.Fatalf("%s exited with %v", p.id, p.err)
	}
}

// waitLog polls the agent's log for a line containing every part.
func (p *agentProc) waitLog(parts ...string) {
	p.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		for _, line := range strings.Split(p.Logs(), "\n") {
			ok := true
			for _, part := range parts {
				if !strings.Contains(line, part) {
					ok = false
					break
				}
			}
			if ok {
				return
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s never logged a line with %q", p.id, parts)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// vmHWM is the process's peak resident set size in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", fmt.Sprint(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kib int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &kib)
			return kib << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// sharedAgent builds the linux agent once for every durability test.
func sharedAgent(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kanade-agent-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "kanade-agent")
		cmd := exec.Command("go", "build", "-o", builtBin,
			"-ldflags", "-X github.com/kanade-project/kanade/internal/buildinfo.Version="+testVersion, ".")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("%v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtBin != "" {
		_ = os.RemoveAll(filepath.Dir(builtBin))
	}
	os.Exit(code)
}

// killGroup kills the process group led by pid (a script orphaned by a
// killed agent).
func killGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGKILL) }
