package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/kanade-project/kanade/internal/cmdsign"
	"github.com/kanade-project/kanade/internal/ledger"
	"github.com/kanade-project/kanade/internal/signing"
	"github.com/kanade-project/kanade/internal/wire"
)

// CommandSigning configures signed commands. Trust comes only from the
// endpoint's own configuration (agent.toml or the Windows registry), never
// from KV: whoever can write KV must not be able to switch the check off
// or add a key.
type CommandSigning struct {
	// Require is [security] require_signed_commands. It enforces while the
	// ring holds at least one key; with an empty ring nothing is enforced
	// (and the agent warns), with a ring that cannot be read every command
	// is refused (fail closed).
	Require bool
	// Keys is where the ring comes from; nil trusts no key.
	Keys CommandKeySource
	// ReloadInterval is how often Keys is checked for a change; default
	// 60 s.
	ReloadInterval time.Duration
}

// CommandKeySource is a ring of trusted command keys that an operator may
// change while the agent runs (agentconfig.CommandKeys).
type CommandKeySource interface {
	// Stamp cheaply identifies the current content; the ring is read
	// again only when it changes.
	Stamp() (string, error)
	// Load reads and parses the ring.
	Load() (*signing.Ring, error)
	// String names the source in messages.
	String() string
}

// errKeysUnavailable marks refusals made because the ring could not be
// read (fail closed).
var errKeysUnavailable = errors.New("this endpoint requires signed commands but cannot read its trusted command keys")

// Verification states, as reported in command_verification events: "ok" or
// a cmdsign.Reason.
const (
	stateOK              = "ok"
	stateKeysUnavailable = "keys_unavailable"
)

// verifier holds the trusted ring and the verification state. The ring in
// use only ever changes to one that parsed: a damaged file leaves the
// previous ring in force.
type verifier struct {
	require  bool
	keys     CommandKeySource
	interval time.Duration
	log      *slog.Logger
	obs      func(kind, recordID string, payload any)

	mu      sync.Mutex
	ring    *signing.Ring // nil until a ring parsed
	loadErr error         // why no ring parsed yet (fail closed when required)
	seen    string        // stamp of the last load attempt
	state   string        // last verification outcome
}

func newVerifier(cs *CommandSigning, log *slog.Logger, obs func(kind, recordID string, payload any)) *verifier {
	v := &verifier{log: log, obs: obs, state: stateOK, interval: time.Minute}
	if cs != nil {
		v.require, v.keys = cs.Require, cs.Keys
		if cs.ReloadInterval > 0 {
			v.interval = cs.ReloadInterval
		}
	}
	return v
}

// load reads the ring at start and says what that means for this endpoint.
func (v *verifier) load() {
	if v.keys != nil {
		stamp, ring, err := v.read()
		v.mu.Lock()
		v.seen, v.ring, v.loadErr = stamp, ring, err
		v.mu.Unlock()
		if err != nil {
			if v.require {
				v.log.Error("signed commands required but the command keys cannot be read: every command is refused (exit 123) until they can; the agent re-reads them every "+v.interval.String(),
					"security", true, "keys_from", v.keys.String(), "err", err)
				v.obs(wire.ObsCommandKeys, "keys-"+nuid.Next(), map[string]string{"state": "unreadable", "source": v.keys.String(), "error": err.Error()})
			} else {
				v.log.Warn("command keys cannot be read; none trusted (signed commands are not required here)", "keys_from", v.keys.String(), "err", err)
			}
			return
		}
	}
	switch v.mode() {
	case wire.CommandSigningEnforced:
		v.log.Info("signed commands required", "command_keys", v.fingerprints(), "keys_from", v.keys.String())
	case wire.CommandSigningNoKeys:
		v.log.Warn("require_signed_commands is on but no command key is configured: commands run unsigned; add command public keys to [security] command_keys_file",
			"security", true)
	}
}

// read stamps and loads the source. The stamp of a source that cannot be
// stamped is its error, so the same failure is reported once, not at every
// tick.
func (v *verifier) read() (string, *signing.Ring, error) {
	stamp, err := v.keys.Stamp()
	if err != nil {
		// Load explains a missing or unreadable source better than a
		// bare stat error does.
		if _, lerr := v.keys.Load(); lerr != nil {
			return "error: " + err.Error(), nil, lerr
		}
		return "error: " + err.Error(), nil, fmt.Errorf("%s: %w", v.keys, err)
	}
	ring, err := v.keys.Load()
	return stamp, ring, err
}

// mode is the heartbeat's command_signing.
func (v *verifier) mode() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.modeLocked()
}

func (v *verifier) modeLocked() string {
	switch {
	case !v.require:
		return wire.CommandSigningOff
	case v.ring == nil && v.loadErr != nil:
		return wire.CommandSigningFailClosed
	case v.ring.Len() == 0:
		return wire.CommandSigningNoKeys
	}
	return wire.CommandSigningEnforced
}

// fingerprints are the ids of the trusted keys, [] when none.
func (v *verifier) fingerprints() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.ring.IDs()
}

// check verifies a command's raw bytes and headers as received on
// subject. It reports whether a verification took place (false when not
// enforcing) and, if so, its outcome; a nil error lets the command
// through.
func (v *verifier) check(subject string, h nats.Header, body []byte) (bool, error) {
	v.mu.Lock()
	mode, ring, loadErr := v.modeLocked(), v.ring, v.loadErr
	v.mu.Unlock()
	switch mode {
	case wire.CommandSigningOff, wire.CommandSigningNoKeys:
		return false, nil
	case wire.CommandSigningFailClosed:
		return true, fmt.Errorf("%w: %v", errKeysUnavailable, loadErr)
	}
	_, err := cmdsign.Verify(ring, subject, h, body, time.Now())
	return true, err
}

func stateOf(err error) string {
	switch {
	case err == nil:
		return stateOK
	case errors.Is(err, errKeysUnavailable):
		return stateKeysUnavailable
	}
	return cmdsign.Reason(err)
}

// record notes the outcome of verifying a command seen for the first
// time: a change of state is logged and becomes a timeline event, a run of
// the same outcome does not (1,000 refusals for one reason are one event).
// Replays of commands already judged are not recorded, or every reconnect
// would flap the state.
func (v *verifier) record(subject string, err error) {
	state := stateOf(err)
	v.mu.Lock()
	prev := v.state
	v.state = state
	v.mu.Unlock()
	if state == prev {
		return
	}
	payload := map[string]string{"state": state, "previous": prev, "subject": subject}
	if err != nil {
		payload["error"] = err.Error()
	}
	v.log.Info("command verification state changed", "security", true, "state", state, "previous", prev)
	v.obs(wire.ObsCommandVerification, "verify-"+nuid.Next(), payload)
}

// reloadLoop re-checks the ring source every interval and swaps in a ring
// that parsed; one that does not is reported once per change and leaves
// the ring in force.
func (v *verifier) reloadLoop(ctx context.Context) {
	if v.keys == nil {
		return
	}
	t := time.NewTicker(v.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			v.reload()
		}
	}
}

func (v *verifier) reload() {
	stamp, err := v.keys.Stamp()
	if err != nil {
		stamp = "error: " + err.Error()
	}
	v.mu.Lock()
	unchanged := stamp == v.seen
	v.mu.Unlock()
	if unchanged {
		return
	}
	stamp, ring, err := v.read()
	v.mu.Lock()
	v.seen = stamp
	before, kept := v.modeLocked(), v.ring.IDs()
	if err == nil {
		v.ring, v.loadErr = ring, nil
	} else if v.ring == nil {
		v.loadErr = err
	}
	after := v.modeLocked()
	v.mu.Unlock()
	if err != nil {
		v.log.Error("command keys not reloaded: they cannot be read; the keys loaded before stay in force", "security", true,
			"keys_from", v.keys.String(), "kept", kept, "err", err)
		v.obs(wire.ObsCommandKeys, "keys-"+nuid.Next(), map[string]any{"state": "reload_failed", "source": v.keys.String(), "error": err.Error(), "kept": kept})
		return
	}
	v.log.Info("command keys reloaded", "security", true, "keys_from", v.keys.String(), "command_keys", ring.IDs(), "command_signing", after)
	v.obs(wire.ObsCommandKeys, "keys-"+nuid.Next(), map[string]any{"state": "reloaded", "source": v.keys.String(), "command_keys": ring.IDs(), "command_signing": after, "previous": before})
	if after == wire.CommandSigningNoKeys {
		v.log.Warn("require_signed_commands is on but the reloaded ring is empty: commands run unsigned", "security", true, "keys_from", v.keys.String())
	}
}

// refuse answers a command whose signature did not verify with exit 123
// and a stderr that tells the operator what to fix. It is admitted to the
// ledger so a replay does not answer twice — under a marker, not the
// command: crash recovery runs entries admitted but not launched, and a
// refused command must never become runnable through a crash at the wrong
// moment (the marker does not decode as a command).
func (a *Agent) refuse(subject string, body []byte, source string, cause error) {
	rid := wire.RecoverRequestID(body)
	log := a.log.With("security", true, "reason", stateOf(cause), "subject", subject, "source", source, "request_id", rid)
	if rid == "" {
		log.Warn("security: command refused; no request_id to answer", "err", cause, "bytes", len(body))
		a.verify.record(subject, cause)
		return
	}
	execID := wire.RecoverString(body, "exec_id", "job_id")
	marker, _ := json.Marshal(refusalMarker{Refused: "signature", BodySHA256: ledger.BodyHash(body)})
	verdict, entry, err := a.ledger.Admit(rid, execID, marker, nuid.Next())
	switch {
	case err != nil:
		log.Error("security: command refused; cannot record the refusal, so it is not answered now (a replay will offer it again)", "err", cause, "ledger_err", err)
		return
	case verdict == ledger.Duplicate:
		log.Debug("refused command seen again", "err", cause)
		return
	case verdict == ledger.Conflict:
		// A known request_id with other bytes: typically a copy of a
		// command this agent already ran, stripped or altered.
		log.Warn("security: command refused; it reuses the request_id of another command", "err", cause, "known_state", entry.State)
		return
	}
	log.Warn("security: command refused", "err", cause)
	a.verify.record(subject, cause)
	if !wire.ValidToken(execID) {
		execID = rid
	}
	a.finish(wire.ExecResult{
		ResultID:   entry.ResultID,
		RequestID:  rid,
		ExecID:     execID,
		PCID:       a.cfg.ID,
		ExitCode:   wire.ExitRefusedSignature,
		Stderr:     refusalText(cause, a.verify),
		FinishedAt: time.Now().UTC(),
	})
}

// refusalMarker is what the ledger keeps for a refused command instead of
// its bytes.
type refusalMarker struct {
	Refused    string `json:"refused"`
	BodySHA256 string `json:"body_sha256"`
}

func isRefusalMarker(b []byte) bool {
	var m refusalMarker
	return json.Unmarshal(b, &m) == nil && m.Refused == "signature"
}

// refusalText is the stderr of a refusal: what happened, then what to do.
func refusalText(cause error, v *verifier) string {
	var fix string
	switch stateOf(cause) {
	case stateKeysUnavailable:
		fix = "fix the command key ring named above (the agent re-reads it within " + v.interval.String() + "); until then this endpoint runs no command"
	case "unsigned":
		fix = "this endpoint requires signed commands: sign with `kanade --command-key FILE` (or KANADE_COMMAND_KEY=FILE); the backend signs with [security] command_key_file in server.toml"
	case "unknown_key":
		fix = "sign with a key this endpoint trusts, or add the signer's command.pub line to " + v.source()
	case "bad_signature":
		fix = "the body or a signed header changed after signing; publish the command again from a kanade client instead of copying or editing it"
	case "wrong_target":
		fix = "a command signed for one target cannot be re-published to another; sign it for this target"
	case "expired":
		fix = "publish the command again: a signature is valid for at most 7 days (an hour past deadline_at when there is one)"
	case "future":
		fix = "synchronise the clocks of the signer and this endpoint (NTP)"
	case "lifetime":
		fix = "a signature may be valid for at most 7 days; sign it again with a kanade client"
	default:
		fix = "send the command with a kanade client; its signature headers are not in the expected form"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[kanade] command refused (exit %d): %v\n[kanade] %s\n", wire.ExitRefusedSignature, cause, fix)
	return b.String()
}

func (v *verifier) source() string {
	if v.keys == nil {
		return "[security] command_keys_file"
	}
	return v.keys.String()
}
