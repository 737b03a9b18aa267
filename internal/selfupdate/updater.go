// Package selfupdate replaces the running agent with the fleet's
// target_version without ever bricking an endpoint.
//
// The sequence follows the reference agent and closes its gaps:
//
//  1. Act only when the resolved target_version changes and differs from the
//     running version (cadence-only config changes are ignored), never for a
//     quarantined version or a target held by the loop guard, and only once
//     the running version has proven healthy (so there is a last-good binary
//     to return to).
//  2. Sleep a random jitter in [0, target_version_jitter].
//  3. Stream the object for this platform to <data>/staging while hashing;
//     check the release record against the object, the size and SHA-256 of
//     the bytes, and — when the endpoint trusts release keys (config file or
//     registry, never KV) — the Ed25519 signature over the record. Anything
//     else is refused, reported as agent_update_refused, and not retried
//     until the target changes.
//  4. Run the staged binary with --version: a binary that cannot even start
//     is refused before it replaces anything.
//  5. Record last_swap.json, swap beside the executable (.new, .old), and
//     ask the agent to exit with the restart code; the service manager
//     starts the new binary, whose Boot does the rest (loop guard, boot
//     sentinel, rollback).
//  6. After HealthyAfter connected, the running binary becomes last-good and
//     a successful swap is reported once as agent_update {from, to}.
package selfupdate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/connstate"
	"github.com/kanade-project/kanade/internal/release"
	"github.com/kanade-project/kanade/internal/retry"
	"github.com/kanade-project/kanade/internal/signing"
	"github.com/kanade-project/kanade/internal/wire"
)

// Obs kinds emitted by the updater.
const (
	ObsUpdate        = wire.ObsAgentUpdate
	ObsUpdateRefused = "agent_update_refused"
	ObsUpdateLoop    = "agent_update_loop"
	ObsRollback      = "agent_rollback"
)

// Target is what the fleet config says, with a channel closed when the
// config changes.
type Target func() (version string, jitter time.Duration, changed <-chan struct{})

// Options configure an Updater.
type Options struct {
	Version string // running version
	GOOS    string
	GOARCH  string
	// Exe is the running executable (os.Executable()).
	Exe string
	// StagingDir receives downloads (<data>/staging).
	StagingDir string
	JS         jetstream.JetStream
	Link       *connstate.Tracker
	Logger     *slog.Logger
	// Ring holds the release keys the endpoint trusts; empty accepts
	// unsigned releases (digest still checked).
	Ring   *signing.Ring
	Target Target
	// Obs queues a timeline event (kind, idempotent record id, payload).
	Obs func(kind, recordID string, payload any)
	// Restart asks the agent to exit with the restart code.
	Restart func()
	// HealthyAfter is how long the agent must stay connected before the
	// running binary counts as healthy (default 30 s).
	HealthyAfter time.Duration
	Retry        retry.Policy
	// OnDownload, when set, is called as a download starts (tests).
	OnDownload func(version string)
}

// Updater runs the sequence above. Create with New, then Run.
type Updater struct {
	o   Options
	log *slog.Logger
	f   files

	mu      sync.Mutex
	healthy chan struct{} // closed once healthy
	isHeal  bool
}

// New returns an Updater.
func New(o Options) *Updater {
	if o.HealthyAfter <= 0 {
		o.HealthyAfter = 30 * time.Second
	}
	if o.Retry.Min <= 0 {
		o.Retry = retry.Default()
	}
	return &Updater{o: o, log: o.Logger.With("component", "selfupdate"), f: files{dir: stateDir(o.Exe)}, healthy: make(chan struct{})}
}

// Quarantined lists the versions this endpoint will never install.
func (u *Updater) Quarantined() []string { return u.f.quarantine() }

// Run reports what Boot left behind, confirms health, and follows the
// target until ctx ends.
func (u *Updater) Run(ctx context.Context) {
	u.reportBoot()
	var wg sync.WaitGroup
	wg.Go(func() { u.healthLoop(ctx) })
	u.targetLoop(ctx)
	wg.Wait()
}

func (u *Updater) reportBoot() {
	var rb rollbackEvent
	if ok, _ := u.f.read("rollback.json", &rb); ok {
		u.o.Obs(ObsRollback, "rollback-"+rb.Nonce, map[string]any{"from": rb.From, "to": rb.To, "failed_boots": rb.Boots})
		u.f.remove("rollback.json")
	}
	var g loopGuard
	if ok, _ := u.f.read("loop_guard.json", &g); ok && !g.Emitted {
		u.o.Obs(ObsUpdateLoop, "loop-"+g.Nonce, map[string]any{"target": g.Target, "reports": g.Reported})
		g.Emitted = true
		_ = u.f.write("loop_guard.json", g)
	}
}

// healthLoop waits for HealthyAfter of continuous connection, then makes
// the running binary last-good and confirms a pending swap.
func (u *Updater) healthLoop(ctx context.Context) {
	var st bootState
	if _, err := u.f.read("boot.json", &st); err == nil && st.Healthy && st.Version == u.o.Version {
		if _, err := os.Stat(u.lastGoodBin()); err == nil {
			u.markHealthy(ctx, false)
			return
		}
	}
	for {
		down, up := u.o.Link.Disconnected(), u.o.Link.Reconnected()
		if !u.o.Link.Connected() {
			select {
			case <-ctx.Done():
				return
			case <-up:
			}
			continue
		}
		t := time.NewTimer(u.o.HealthyAfter)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-down:
			t.Stop() // the clock starts again at the next connection
		case <-t.C:
			u.markHealthy(ctx, true)
			return
		}
	}
}

func (u *Updater) lastGoodBin() string { b, _ := u.f.lastGood(); return b }

func (u *Updater) markHealthy(ctx context.Context, fresh bool) {
	if fresh {
		bin, verPath := u.f.lastGood()
		if err := os.MkdirAll(u.f.dir, 0o700); err == nil {
			tmp := bin + ".tmp"
			if err := copyFile(u.o.Exe, tmp, 0o755); err != nil {
				u.log.Warn("cannot keep a last-good copy of the running binary", "err", err)
			} else if err := os.Rename(tmp, bin); err != nil {
				u.log.Warn("cannot keep a last-good copy of the running binary", "err", err)
			} else {
				_ = os.WriteFile(verPath, []byte(u.o.Version), 0o600)
			}
		}
		_ = u.f.write("boot.json", bootState{Version: u.o.Version, Healthy: true})
		u.log.Info("running version is healthy; kept as last-good", "version", u.o.Version)
	}
	var sw lastSwap
	if ok, _ := u.f.read("last_swap.json", &sw); ok && sw.Target == u.o.Version {
		u.o.Obs(ObsUpdate, "update-"+sw.Nonce, map[string]string{"from": sw.RunningBefore, "to": sw.Target})
		u.f.remove("last_swap.json")
		u.log.Info("update confirmed", "from", sw.RunningBefore, "to", sw.Target)
	}
	u.mu.Lock()
	if !u.isHeal {
		u.isHeal = true
		close(u.healthy)
	}
	u.mu.Unlock()
}

// targetLoop acts when the target changes.
func (u *Updater) targetLoop(ctx context.Context) {
	acted := ""
	for {
		target, jitter, changed := u.o.Target()
		if target != acted {
			acted = target
			attemptCtx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() {
				defer close(done)
				u.attempt(attemptCtx, target, jitter)
			}()
			// A new target (not a cadence change) cancels the attempt.
			for waiting := true; waiting; {
				select {
				case <-ctx.Done():
					cancel()
					<-done
					return
				case <-done:
					waiting = false
				case <-changed:
					next, _, ch := u.o.Target()
					changed = ch
					if next != target {
						cancel()
						<-done
						waiting = false
					}
				}
			}
			cancel()
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// attempt runs one update to target; it returns when done, refused or
// cancelled.
func (u *Updater) attempt(ctx context.Context, target string, jitter time.Duration) {
	log := u.log.With("target", target, "running", u.o.Version)
	if target == "" || target == u.o.Version {
		return
	}
	// The target comes from KV and names the object and the staging
	// file: refuse anything that is not a plain version label before it
	// reaches a path.
	if err := release.CheckVersion(target); err != nil {
		u.refuse(target, fmt.Errorf("target_version: %w", err))
		return
	}
	if slices.Contains(u.f.quarantine(), target) {
		log.Warn("target is quarantined on this endpoint (it failed to boot here); not installing it")
		u.o.Obs(ObsUpdateRefused, "refused-"+target+"-quarantined", map[string]string{"target": target, "reason": "quarantined"})
		return
	}
	var g loopGuard
	if ok, _ := u.f.read("loop_guard.json", &g); ok {
		if g.Target == target {
			log.Warn("loop guard: the binary published as this target reported another version; waiting for a new target", "reported", g.Reported)
			return
		}
		u.f.remove("loop_guard.json") // the target changed: the guard is lifted
	}
	// Updating needs a last-good binary to return to.
	select {
	case <-ctx.Done():
		return
	case <-u.healthy:
	}
	if jitter > 0 {
		d := rand.N(jitter)
		log.Info("update scheduled after jitter", "in", d.Round(time.Second))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	name := release.ObjectName(target, u.o.GOOS, u.o.GOARCH)
	staged, err := retry.Forever(ctx, u.o.Retry, u.log, "release "+name, u.o.Link.Reconnected, func(ctx context.Context) (string, error) {
		p, err := u.download(ctx, name)
		var refused *refusal
		if errors.As(err, &refused) {
			return "", nil // not retryable: reported below
		}
		if err != nil {
			return "", err
		}
		return p, nil
	})
	if err != nil {
		return // cancelled
	}
	if staged == "" {
		return
	}
	defer os.Remove(staged)
	if err := u.smokeTest(ctx, staged, target); err != nil {
		u.refuse(target, err)
		return
	}
	sw := lastSwap{Target: target, RunningBefore: u.o.Version, Nonce: nonce()}
	if err := u.f.write("last_swap.json", sw); err != nil {
		log.Error("cannot record the swap; not swapping", "err", err)
		return
	}
	if err := swapIn(u.o.Exe, staged); err != nil {
		u.f.remove("last_swap.json")
		u.refuse(target, fmt.Errorf("swap failed: %w", err))
		return
	}
	log.Info("new binary installed; restarting into it")
	u.o.Restart()
}

// refusal is a verification failure: not retried until the target changes.
type refusal struct{ err error }

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

func (u *Updater) refuse(target string, err error) {
	u.log.Error("update refused", "target", target, "err", err)
	u.o.Obs(ObsUpdateRefused, "refused-"+target+"-"+nonce(), map[string]string{"target": target, "reason": err.Error()})
}

// download streams the release to the staging dir through Fetch and
// verifies it. A verification failure is reported here and returned as a
// *refusal.
func (u *Updater) download(ctx context.Context, name string) (string, error) {
	version, _, _, _ := release.ParseObjectName(name)
	dst, err := stagingPath(u.o.StagingDir, name)
	if err != nil {
		u.refuse(version, err)
		return "", &refusal{err}
	}
	var out *os.File
	rec, n, err := Fetch(ctx, u.o.JS, name, u.o.Ring, func(release.Record) (io.Writer, error) {
		// Only a release whose record verified gets a staging file.
		if u.o.Ring.Len() == 0 {
			u.log.Warn("no release keys configured on this endpoint: accepting the release on its digest alone", "release", name)
		}
		if u.o.OnDownload != nil {
			u.o.OnDownload(version)
		}
		if err := os.MkdirAll(u.o.StagingDir, 0o700); err != nil {
			return nil, fmt.Errorf("staging dir: %w", err)
		}
		f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o700)
		if err != nil {
			return nil, fmt.Errorf("staging file: %w", err)
		}
		out = f
		return f, nil
	})
	if err == nil {
		// The binary is about to replace the running one: it must be on
		// disk, not in the page cache, before the swap.
		err = out.Sync()
		if err != nil {
			err = fmt.Errorf("downloading %s: %w", name, err)
		}
	}
	if out != nil {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("downloading %s: %w", name, cerr)
		}
		if err != nil {
			os.Remove(dst) // a partial or refused download is never kept
		}
	}
	var bad *VerifyError
	if errors.As(err, &bad) {
		u.refuse(version, bad.Err)
		return "", &refusal{bad.Err}
	}
	if err != nil {
		return "", err
	}
	u.log.Info("release downloaded and verified", "release", name, "bytes", n, "signed_by", rec.KeyID)
	return dst, nil
}

// smokeTest runs the staged binary with --version.
func (u *Updater) smokeTest(ctx context.Context, path, target string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, path, "--version")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("the new binary does not start (%s --version: %v): %s", filepath.Base(path), err, strings.TrimSpace(out.String()))
	}
	if got := strings.TrimSpace(out.String()); got != target {
		u.log.Warn("the new binary reports another version than its label; the loop guard will hold if it persists", "label", target, "reports", got)
	}
	return nil
}
