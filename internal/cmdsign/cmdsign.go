// Package cmdsign signs and verifies kanade Commands.
//
// An agent runs scripts as SYSTEM, so whoever can publish on commands.* owns
// the fleet unless endpoints check an operator signature. A signature
// travels in NATS headers next to the command (JetStream stores headers, so
// a command replayed from stream EXEC carries the same proof):
//
//	Kanade-Sig-Alg:     ed25519
//	Kanade-Sig-Key:     <key id: 16 hex digits, see signing.KeyID>
//	Kanade-Sig-Time:    <signing time, RFC 3339 UTC with seconds>
//	Kanade-Sig-Target:  pc:<pc> | group:<group> | all
//	Kanade-Sig-Expires: <expiry, same format>
//	Kanade-Sig:         <standard base64 Ed25519 signature>
//
// The signature covers a domain-separated canonical encoding of every
// header above except the signature itself, followed by the exact body
// bytes on the wire (see Message). The body is never re-marshalled: what
// is verified is what the agent decodes.
//
// Guarantees of Verify: it never panics on any input; it accepts a message
// only when every header is present once and matches its grammar, the key
// is in the ring, the signature verifies over those exact headers and body,
// the signed target is the target of the subject the message arrived on,
// the validity (expiry minus signing time) is positive and at most
// MaxLifetime, the signing time is at most MaxClockSkew in the future and
// the expiry has not passed. Every refusal wraps one of the Err* values.
package cmdsign

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-project/kanade/internal/signing"
	"github.com/kanade-project/kanade/internal/wire"
)

// Header names. NATS headers are case-sensitive; these exact spellings are
// the protocol.
const (
	HeaderAlg     = "Kanade-Sig-Alg"
	HeaderKey     = "Kanade-Sig-Key"
	HeaderTime    = "Kanade-Sig-Time"
	HeaderTarget  = "Kanade-Sig-Target"
	HeaderExpires = "Kanade-Sig-Expires"
	HeaderSig     = "Kanade-Sig"
)

// Alg is the only signature algorithm.
const Alg = "ed25519"

// TimeFormat is the one accepted encoding of Kanade-Sig-Time and
// Kanade-Sig-Expires: RFC 3339 in UTC, whole seconds, "Z" suffix. One
// spelling per instant keeps the signed bytes unambiguous.
const TimeFormat = "2006-01-02T15:04:05Z"

// MaxLifetime bounds expiry minus signing time. Stream EXEC keeps commands
// 7 days, so an offline laptop can still replay a command within its
// lifetime, and a captured command is worthless after it.
const MaxLifetime = 7 * 24 * time.Hour

// MaxClockSkew is how far in the future a signing time may be: endpoint
// clocks drift, and a laptop a few minutes behind must not refuse a fresh
// command.
const MaxClockSkew = 5 * time.Minute

// domain separates these signatures from every other use of a key; "v1"
// versions the encoding.
const domain = "kanade-command-sig-v1\n"

// Errors of Verify. Each refusal wraps exactly one of them.
var (
	ErrUnsigned   = errors.New("the command is not signed")
	ErrMalformed  = errors.New("the signature headers are malformed")
	ErrUnknownKey = signing.ErrUnknownKey
	ErrBadSig     = signing.ErrBadSig
	ErrTarget     = errors.New("the command was signed for another target")
	ErrExpired    = errors.New("the command's signature has expired")
	ErrFuture     = errors.New("the command was signed in the future")
	ErrLifetime   = errors.New("the signed validity is longer than allowed")
)

// Reason is a short stable name for the Err* value err wraps ("ok" for
// nil), for logs, events and metrics.
func Reason(err error) string {
	for _, r := range []struct {
		err  error
		name string
	}{
		{ErrUnsigned, "unsigned"},
		{ErrMalformed, "malformed"},
		{ErrUnknownKey, "unknown_key"},
		{ErrBadSig, "bad_signature"},
		{ErrTarget, "wrong_target"},
		{ErrExpired, "expired"},
		{ErrFuture, "future"},
		{ErrLifetime, "lifetime"},
	} {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	if err == nil {
		return "ok"
	}
	return "error"
}

// Envelope is the signed part of a command besides its body.
type Envelope struct {
	Alg     string
	KeyID   string
	Time    time.Time
	Target  string
	Expires time.Time
}

// TargetAll, TargetPC and TargetGroup build Kanade-Sig-Target values.
const TargetAll = "all"

// TargetPC is the target of commands.pc.<pc>.
func TargetPC(pc string) string { return "pc:" + pc }

// TargetGroup is the target of commands.group.<group>.
func TargetGroup(group string) string { return "group:" + group }

// TargetOfSubject returns the signing target of a command subject.
func TargetOfSubject(subject string) (string, error) {
	if subject == wire.SubjectCommandsAll {
		return TargetAll, nil
	}
	if pc, ok := strings.CutPrefix(subject, wire.SubjectCommandsPC("")); ok && wire.ValidToken(pc) {
		return TargetPC(pc), nil
	}
	if g, ok := strings.CutPrefix(subject, wire.SubjectCommandsGroup("")); ok && wire.ValidToken(g) {
		return TargetGroup(g), nil
	}
	return "", fmt.Errorf("%q is not a command subject (commands.all, commands.pc.<pc> or commands.group.<group>)", subject)
}

// checkTarget enforces the target grammar; a valid target holds no
// newline, so it cannot forge another line of the signed message.
func checkTarget(t string) error {
	if t == TargetAll {
		return nil
	}
	if pc, ok := strings.CutPrefix(t, "pc:"); ok && wire.ValidToken(pc) {
		return nil
	}
	if g, ok := strings.CutPrefix(t, "group:"); ok && wire.ValidToken(g) {
		return nil
	}
	return fmt.Errorf("%w: target %q: expected all, pc:<pc> or group:<group>", ErrMalformed, t)
}

func checkKeyID(id string) error {
	if len(id) != 16 {
		return fmt.Errorf("%w: key id %q: expected 16 lower-case hex digits", ErrMalformed, id)
	}
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return fmt.Errorf("%w: key id %q: expected 16 lower-case hex digits", ErrMalformed, id)
		}
	}
	return nil
}

// parseTime accepts exactly TimeFormat: parsing then formatting must give
// the input back, which rules out offsets, fractions and out-of-range
// fields.
func parseTime(name, s string) (time.Time, error) {
	t, err := time.Parse(TimeFormat, s)
	if err != nil || t.Format(TimeFormat) != s {
		return time.Time{}, fmt.Errorf("%w: %s %q: expected UTC like 2025-06-01T12:00:00Z", ErrMalformed, name, s)
	}
	return t, nil
}

// Message is the byte string that is signed: the domain line, then alg, key
// id, time, target and expiry each on its own line, then the body exactly
// as published. The envelope fields are checked first, so no field can
// smuggle a newline and shift the others.
func Message(e Envelope, body []byte) ([]byte, error) {
	if e.Alg != Alg {
		return nil, fmt.Errorf("%w: algorithm %q: only %s is supported", ErrMalformed, e.Alg, Alg)
	}
	if err := checkKeyID(e.KeyID); err != nil {
		return nil, err
	}
	if err := checkTarget(e.Target); err != nil {
		return nil, err
	}
	var b strings.Builder
	b.Grow(len(domain) + 96 + len(e.Target) + len(body))
	b.WriteString(domain)
	for _, line := range []string{e.Alg, e.KeyID, e.Time.UTC().Format(TimeFormat), e.Target, e.Expires.UTC().Format(TimeFormat)} {
		b.WriteString(line)
		b.WriteByte('\n')
	}
	b.Write(body)
	return []byte(b.String()), nil
}

// Verify checks the signature headers h of body, received on subject,
// against ring at time now. See the package documentation for what it
// guarantees. The envelope is returned when it could be parsed, also with
// an error, so the caller can say which key or target was involved.
func Verify(ring *signing.Ring, subject string, h nats.Header, body []byte, now time.Time) (Envelope, error) {
	var e Envelope
	sig64, err := one(h, HeaderSig)
	if err != nil {
		if !present(h) {
			return e, ErrUnsigned
		}
		if _, ok := h[HeaderSig]; !ok {
			return e, fmt.Errorf("%w: the %s header is missing (other signature headers are present: stripped in transit?)", ErrUnsigned, HeaderSig)
		}
		return e, err
	}
	var vals [5]string
	for i, name := range []string{HeaderAlg, HeaderKey, HeaderTime, HeaderTarget, HeaderExpires} {
		if vals[i], err = one(h, name); err != nil {
			return e, err
		}
	}
	e.Alg, e.KeyID, e.Target = vals[0], vals[1], vals[3]
	if e.Time, err = parseTime(HeaderTime, vals[2]); err != nil {
		return e, err
	}
	if e.Expires, err = parseTime(HeaderExpires, vals[4]); err != nil {
		return e, err
	}
	msg, err := Message(e, body)
	if err != nil {
		return e, err
	}
	// Go's base64 decoder skips CR and LF even in Strict mode; requiring
	// the canonical spelling keeps one accepted header value per signature
	// (found by FuzzVerify: a signature with a newline inside verified).
	sig, err := base64.StdEncoding.Strict().DecodeString(sig64)
	if err != nil || len(sig) != ed25519.SignatureSize || base64.StdEncoding.EncodeToString(sig) != sig64 {
		return e, fmt.Errorf("%w: %s is not a base64 Ed25519 signature", ErrMalformed, HeaderSig)
	}
	if err := ring.Verify(msg, sig, e.KeyID); err != nil {
		if errors.Is(err, signing.ErrUnknownKey) {
			return e, fmt.Errorf("%w: key %s (this endpoint trusts %s)", ErrUnknownKey, e.KeyID, trusted(ring))
		}
		return e, err
	}
	// From here on the envelope is authentic: the checks below are about
	// where and when it may be used, and their errors can be trusted.
	got, err := TargetOfSubject(subject)
	if err != nil {
		return e, fmt.Errorf("%w: signed for %s but received on %s", ErrTarget, e.Target, subject)
	}
	if got != e.Target {
		return e, fmt.Errorf("%w: signed for %s but received on %s", ErrTarget, e.Target, subject)
	}
	life := e.Expires.Sub(e.Time)
	if life <= 0 || life > MaxLifetime {
		return e, fmt.Errorf("%w: signed %s, expires %s: the validity must be positive and at most %s", ErrLifetime,
			e.Time.Format(TimeFormat), e.Expires.Format(TimeFormat), MaxLifetime)
	}
	if e.Time.After(now.Add(MaxClockSkew)) {
		return e, fmt.Errorf("%w: signed at %s, %s ahead of this endpoint's clock (%s); more than the %s allowed: check the clocks of the signer and this endpoint",
			ErrFuture, e.Time.Format(TimeFormat), e.Time.Sub(now).Round(time.Second), now.UTC().Format(TimeFormat), MaxClockSkew)
	}
	if now.After(e.Expires) {
		return e, fmt.Errorf("%w: it expired at %s (signed %s; now %s)", ErrExpired,
			e.Expires.Format(TimeFormat), e.Time.Format(TimeFormat), now.UTC().Format(TimeFormat))
	}
	return e, nil
}

// present reports whether any signature header is there.
func present(h nats.Header) bool {
	for _, name := range []string{HeaderAlg, HeaderKey, HeaderTime, HeaderTarget, HeaderExpires, HeaderSig} {
		if _, ok := h[name]; ok {
			return true
		}
	}
	return false
}

// one returns the single value of header name; a missing, repeated or
// empty value is malformed (two values would let a relay choose which
// one a verifier reads).
func one(h nats.Header, name string) (string, error) {
	v := h[name]
	switch {
	case len(v) == 0:
		return "", fmt.Errorf("%w: the %s header is missing", ErrMalformed, name)
	case len(v) > 1:
		return "", fmt.Errorf("%w: the %s header appears %d times", ErrMalformed, name, len(v))
	case v[0] == "":
		return "", fmt.Errorf("%w: the %s header is empty", ErrMalformed, name)
	}
	return v[0], nil
}

func trusted(r *signing.Ring) string {
	ids := r.IDs()
	if len(ids) == 0 {
		return "no command key"
	}
	return strings.Join(ids, ", ")
}
