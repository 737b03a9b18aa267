//go:build linux

package main_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/fleetclient"
	"github.com/kanade-project/kanade/internal/release"
	"github.com/kanade-project/kanade/internal/signing"
	"github.com/kanade-project/kanade/internal/wire"
)

var (
	buildsMu sync.Mutex
	builds   = map[string]string{}
)

// buildVersion compiles the agent stamped with version (and a fault
// injection, for the bad-release tests), once per test process.
func buildVersion(t *testing.T, version, fault string) string {
	t.Helper()
	buildsMu.Lock()
	defer buildsMu.Unlock()
	key := version + "|" + fault
	if p, ok := builds[key]; ok {
		return p
	}
	dir, err := os.MkdirTemp("", "kanade-agent-"+version+"-")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "kanade-agent")
	ld := "-X github.com/kanade-project/kanade/internal/buildinfo.Version=" + version
	if fault != "" {
		ld += " -X github.com/kanade-project/kanade/internal/buildinfo.FaultInjection=" + fault
	}
	if b, err := exec.Command("go", "build", "-o", out, "-ldflags", ld, ".").CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", version, err, b)
	}
	builds[key] = out
	return out
}

// supervisor stands in for the SCM / systemd: it starts the installed
// binary and starts it again whenever it exits non-zero (exit 64 after a
// swap, a crash, a failed boot), as Restart=on-failure does.
type supervisor struct {
	t   *testing.T
	exe string
	cfg string

	mu      sync.Mutex
	logs    strings.Builder
	starts  int
	codes   []int
	current *exec.Cmd
	stopped bool
	done    chan struct{}
}

func (s *supervisor) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.Write(b)
}

func (s *supervisor) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

func (s *supervisor) Starts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.starts
}

func supervise(t *testing.T, exe, cfg string) *supervisor {
	s := &supervisor{t: t, exe: exe, cfg: cfg, done: make(chan struct{})}
	go s.loop()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("supervised agent log (exit codes %v):\n%s", s.codes, s.Logs())
		}
	})
	return s
}

func (s *supervisor) loop() {
	defer close(s.done)
	for {
		s.mu.Lock()
		if s.stopped {
			s.mu.Unlock()
			return
		}
		cmd := exec.Command(s.exe, "--config", s.cfg)
		cmd.Stdout, cmd.Stderr = s, s
		if err := cmd.Start(); err != nil {
			fmt.Fprintf(&s.logs, "supervisor: start failed: %v\n", err)
			s.mu.Unlock()
			time.Sleep(100 * time.Millisecond) // RestartSec
			continue
		}
		s.current = cmd
		s.starts++
		s.mu.Unlock()
		_ = cmd.Wait()
		code := cmd.ProcessState.ExitCode()
		s.mu.Lock()
		s.codes = append(s.codes, code)
		stop := s.stopped || code == 0
		s.mu.Unlock()
		if stop {
			return
		}
		time.Sleep(100 * time.Millisecond) // RestartSec
	}
}

func (s *supervisor) stop() {
	s.mu.Lock()
	s.stopped = true
	if s.current != nil && s.current.ProcessState == nil {
		_ = s.current.Process.Signal(syscall.SIGTERM)
	}
	s.mu.Unlock()
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.mu.Lock()
		_ = s.current.Process.Kill()
		s.mu.Unlock()
		<-s.done
	}
}

// updateRig is a broker, release keys, and helpers to publish and roll out.
type updateRig struct {
	t    *testing.T
	srv  *brokertest.Server
	js   jetstream.JetStream
	c    *fleetclient.Client
	key  ed25519.PrivateKey
	ring string // path of the ring file the agents trust
}

func newUpdateRig(t *testing.T) *updateRig {
	srv := brokertest.Start(t)
	dir := t.TempDir()
	if _, err := signing.Generate(dir, signing.PurposeRelease); err != nil {
		t.Fatal(err)
	}
	key, err := signing.LoadPrivate(filepath.Join(dir, "release.key"), signing.PurposeRelease)
	if err != nil {
		t.Fatal(err)
	}
	c, err := fleetclient.New(srv.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	return &updateRig{t: t, srv: srv, js: srv.JetStream(t), c: c, key: key, ring: filepath.Join(dir, "release.pub")}
}

// install copies bin to its own install dir and writes its config.
func (r *updateRig) install(id, bin string) (exe, cfg string) {
	dir := r.t.TempDir()
	exe = filepath.Join(dir, "bin", "kanade-agent")
	if err := os.MkdirAll(filepath.Dir(exe), 0o755); err != nil {
		r.t.Fatal(err)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		r.t.Fatal(err)
	}
	cfg = filepath.Join(dir, "agent.toml")
	body := fmt.Sprintf("[agent]\nid = %q\nnats_urls = [%q]\ndata_dir = '%s'\n\n[log]\nlevel = \"debug\"\n\n[security]\nrelease_keys_file = '%s'\n\n[update]\nhealthy_after = \"1s\"\n",
		id, r.srv.URL(), filepath.Join(dir, "data"), r.ring)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		r.t.Fatal(err)
	}
	return exe, cfg
}

func (r *updateRig) publish(bin, version string, key ed25519.PrivateKey) release.Record {
	r.t.Helper()
	rec, err := release.Publish(context.Background(), r.js, release.PublishOptions{Path: bin, Version: version, OS: "linux", Arch: "amd64", Key: key})
	if err != nil {
		r.t.Fatal(err)
	}
	return rec
}

func (r *updateRig) rollout(pc, version string) {
	r.t.Helper()
	kv, err := r.js.KeyValue(context.Background(), wire.BucketAgentConfig)
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), wire.ConfigKeyPC(pc), []byte(fmt.Sprintf(`{"target_version":%q,"target_version_jitter":"0s"}`, version))); err != nil {
		r.t.Fatal(err)
	}
}

// waitVersion waits until pc answers pings as version.
func (r *updateRig) waitVersion(pc, version string, within time.Duration) wire.Heartbeat {
	r.t.Helper()
	deadline := time.Now().Add(within)
	var last wire.Heartbeat
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		hb, err := r.c.Ping(ctx, pc)
		cancel()
		if err == nil {
			last = hb
			if hb.AgentVersion == version {
				return hb
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.t.Fatalf("%s never reported version %s (last heartbeat %+v)", pc, version, last)
	return last
}

// obsEvents returns pc's timeline events of kind.
func (r *updateRig) obsEvents(pc, kind string) []wire.ObsEvent {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := r.js.Stream(ctx, wire.StreamObs)
	if err != nil {
		r.t.Fatal(err)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{wire.SubjectObs(pc)}})
	if err != nil {
		r.t.Fatal(err)
	}
	var out []wire.ObsEvent
	for {
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			r.t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var ev wire.ObsEvent
			if json.Unmarshal(m.Data(), &ev) == nil && ev.Kind == kind {
				out = append(out, ev)
			}
		}
		if n == 0 {
			return out
		}
	}
}

func (r *updateRig) waitObs(pc, kind string, within time.Duration) []wire.ObsEvent {
	r.t.Helper()
	deadline := time.Now().Add(within)
	for {
		if evs := r.obsEvents(pc, kind); len(evs) > 0 {
			return evs
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("no %s event from %s", kind, pc)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitLogLine(t *testing.T, logs func() string, part string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(logs(), part) {
		if time.Now().After(deadline) {
			t.Fatalf("log never contained %q", part)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const (
	vA = "1.0.0-a"
	vB = "1.1.0-b"
)

// TestSelfUpdateSwapsOnePC: A is running under a supervisor, B is
// published signed and rolled out to X only; X swaps, comes back as B,
// exactly one agent_update {A→B} reaches OBS_EVENTS, Y is untouched.
func TestSelfUpdateSwapsOnePC(t *testing.T) {
	r := newUpdateRig(t)
	a, b := buildVersion(t, vA, ""), buildVersion(t, vB, "")
	exeX, cfgX := r.install("upd-x", a)
	exeY, cfgY := r.install("upd-y", a)
	x := supervise(t, exeX, cfgX)
	supervise(t, exeY, cfgY)
	r.waitVersion("upd-x", vA, 30*time.Second)
	r.waitVersion("upd-y", vA, 30*time.Second)
	waitLogLine(t, x.Logs, "kept as last-good", 30*time.Second)

	r.publish(b, vB, r.key)
	r.rollout("upd-x", vB)
	r.waitVersion("upd-x", vB, 60*time.Second)
	waitLogLine(t, x.Logs, "update confirmed", 30*time.Second)
	evs := r.waitObs("upd-x", wire.ObsAgentUpdate, 30*time.Second)
	if len(evs) != 1 {
		t.Fatalf("%d agent_update events, want exactly 1: %+v", len(evs), evs)
	}
	var p map[string]string
	_ = json.Unmarshal(evs[0].Payload, &p)
	if p["from"] != vA || p["to"] != vB {
		t.Errorf("agent_update payload = %v, want from %s to %s", p, vA, vB)
	}
	if got, _ := os.ReadFile(exeX); len(got) == 0 {
		t.Fatal("installed binary missing")
	}
	if _, err := os.Stat(exeX + ".old"); err == nil {
		t.Error(".old left beside the binary after the new one started")
	}
	hb := r.waitVersion("upd-y", vA, 5*time.Second)
	if hb.AgentVersion != vA {
		t.Errorf("upd-y = %s, want untouched %s", hb.AgentVersion, vA)
	}
	// A restart of the updated agent does not report the update again.
	if n := len(r.obsEvents("upd-x", wire.ObsAgentUpdate)); n != 1 {
		t.Errorf("%d agent_update events later, want 1", n)
	}
}

// TestSelfUpdateRefusesBadReleases: a digest mismatch, an unsigned
// release and one signed by an unknown key are each refused (reported,
// not installed); X keeps running A.
func TestSelfUpdateRefusesBadReleases(t *testing.T) {
	r := newUpdateRig(t)
	a, b := buildVersion(t, vA, ""), buildVersion(t, vB, "")
	exeX, cfgX := r.install("upd-r", a)
	x := supervise(t, exeX, cfgX)
	r.waitVersion("upd-r", vA, 30*time.Second)
	waitLogLine(t, x.Logs, "kept as last-good", 30*time.Second)

	_, otherKey, _ := ed25519.GenerateKey(nil)
	// Digest mismatch: a record signed for other bytes.
	tampered := filepath.Join(t.TempDir(), "tampered")
	bb, _ := os.ReadFile(b)
	bb[len(bb)/2] ^= 0xff
	if err := os.WriteFile(tampered, bb, 0o755); err != nil {
		t.Fatal(err)
	}
	rec := r.publish(b, "2.0.0-digest", r.key)
	obs, err := r.js.ObjectStore(context.Background(), wire.ObjectAgentReleases)
	if err != nil {
		t.Fatal(err)
	}
	info, err := obs.GetInfo(context.Background(), release.ObjectName("2.0.0-digest", "linux", "amd64"))
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(tampered)
	if _, err := obs.Put(context.Background(), jetstream.ObjectMeta{Name: info.Name, Metadata: info.Metadata}, f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_ = rec

	cases := []struct {
		version string
		publish func()
		reason  string
	}{
		{"2.0.0-digest", func() {}, "sha256"},
		{"2.0.0-unsigned", func() { r.publish(b, "2.0.0-unsigned", nil) }, "not signed"},
		{"2.0.0-otherkey", func() { r.publish(b, "2.0.0-otherkey", otherKey) }, "does not trust"},
	}
	for _, tc := range cases {
		t.Run(tc.version, func(t *testing.T) {
			tc.publish()
			r.rollout("upd-r", tc.version)
			deadline := time.Now().Add(30 * time.Second)
			for {
				found := false
				for _, ev := range r.obsEvents("upd-r", "agent_update_refused") {
					var p map[string]string
					_ = json.Unmarshal(ev.Payload, &p)
					if p["target"] == tc.version && strings.Contains(p["reason"], tc.reason) {
						found = true
					}
				}
				if found {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no agent_update_refused for %s mentioning %q", tc.version, tc.reason)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if hb := r.waitVersion("upd-r", vA, 5*time.Second); hb.AgentVersion != vA {
				t.Fatalf("running %s after a refused update", hb.AgentVersion)
			}
		})
	}
	if s := x.Starts(); s != 1 {
		t.Errorf("agent started %d times, want 1 (nothing was installed)", s)
	}
}

// TestSelfUpdateLoopGuard: a binary published as C that reports B is
// swapped in once; the loop guard then holds and the agent keeps running.
func TestSelfUpdateLoopGuard(t *testing.T) {
	r := newUpdateRig(t)
	a, b := buildVersion(t, vA, ""), buildVersion(t, vB, "")
	exeX, cfgX := r.install("upd-l", a)
	x := supervise(t, exeX, cfgX)
	r.waitVersion("upd-l", vA, 30*time.Second)
	waitLogLine(t, x.Logs, "kept as last-good", 30*time.Second)

	r.publish(b, "3.0.0-c", r.key) // labelled C, reports B
	r.rollout("upd-l", "3.0.0-c")
	r.waitVersion("upd-l", vB, 60*time.Second)
	evs := r.waitObs("upd-l", "agent_update_loop", 30*time.Second)
	if len(evs) != 1 {
		t.Fatalf("%d loop events, want 1", len(evs))
	}
	waitLogLine(t, x.Logs, "loop guard", 30*time.Second)
	starts := x.Starts()
	// Give a looping agent every chance to swap again: it must not.
	time.Sleep(3 * time.Second)
	if x.Starts() != starts || starts != 2 {
		t.Fatalf("agent started %d times (then %d), want exactly 2: one swap", starts, x.Starts())
	}
	if hb := r.waitVersion("upd-l", vB, 5*time.Second); hb.AgentVersion != vB {
		t.Fatalf("agent not running after the guard: %+v", hb)
	}
}

// TestSelfUpdateRollsBackABadVersion: B exits right after its boot check;
// after three tries the agent rolls back to A, quarantines B and lists it
// in A's heartbeat.
func TestSelfUpdateRollsBackABadVersion(t *testing.T) {
	r := newUpdateRig(t)
	a := buildVersion(t, vA, "")
	bad := buildVersion(t, "9.9.9-bad", "exit-after-boot-check")
	exeX, cfgX := r.install("upd-b", a)
	x := supervise(t, exeX, cfgX)
	r.waitVersion("upd-b", vA, 30*time.Second)
	waitLogLine(t, x.Logs, "kept as last-good", 30*time.Second)

	r.publish(bad, "9.9.9-bad", r.key)
	r.rollout("upd-b", "9.9.9-bad")
	waitLogLine(t, x.Logs, "rolling back to the last good binary", 60*time.Second)
	deadline := time.Now().Add(60 * time.Second)
	for {
		hb := r.waitVersion("upd-b", vA, 60*time.Second)
		if slices.Contains(hb.QuarantinedVersions, "9.9.9-bad") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("heartbeat does not list the quarantined version: %+v", hb)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := strings.Count(x.Logs(), "fault injection: exiting after the boot check"); n != 3 {
		t.Errorf("bad version booted %d times, want 3", n)
	}
	r.waitObs("upd-b", "agent_rollback", 30*time.Second)
	// The target still says 9.9.9-bad: the agent must not try again.
	starts := x.Starts()
	time.Sleep(3 * time.Second)
	if x.Starts() != starts {
		t.Fatalf("agent restarted again (%d → %d starts) for a quarantined version", starts, x.Starts())
	}
}

// TestSelfUpdateWaitsForTheBucket: the release store does not exist when
// the agent starts; the update still happens once it appears, without a
// restart of the agent.
func TestSelfUpdateWaitsForTheBucket(t *testing.T) {
	r := newUpdateRig(t)
	if err := r.js.DeleteObjectStore(context.Background(), wire.ObjectAgentReleases); err != nil {
		t.Fatal(err)
	}
	a, b := buildVersion(t, vA, ""), buildVersion(t, vB, "")
	exeX, cfgX := r.install("upd-w", a)
	x := supervise(t, exeX, cfgX)
	r.waitVersion("upd-w", vA, 30*time.Second)
	waitLogLine(t, x.Logs, "kept as last-good", 30*time.Second)
	r.rollout("upd-w", vB)
	waitLogLine(t, x.Logs, "not available yet; retrying", 30*time.Second)

	if _, err := r.js.CreateObjectStore(context.Background(), jetstream.ObjectStoreConfig{Bucket: wire.ObjectAgentReleases}); err != nil {
		t.Fatal(err)
	}
	r.publish(b, vB, r.key)
	r.waitVersion("upd-w", vB, 90*time.Second)
	if x.Starts() != 2 {
		t.Errorf("agent started %d times, want 2 (the swap only)", x.Starts())
	}
}
