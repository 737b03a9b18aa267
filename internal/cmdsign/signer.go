package cmdsign

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-project/kanade/internal/signing"
)

// deadlineGrace keeps a command's expiry a little past its deadline_at: the
// agent's own deadline gate (deadline_at is inside the signed body, so it
// cannot be moved) answers a late command with the precise exit 125, and
// the expiry only has to bound replays.
const deadlineGrace = time.Hour

// Signer signs commands with one command private key. It is safe for
// concurrent use.
type Signer struct {
	key ed25519.PrivateKey
	id  string
	// Now is the signing clock; nil means time.Now. Tests set it to sign
	// commands in the past.
	Now func() time.Time
}

// NewSigner wraps a command private key.
func NewSigner(key ed25519.PrivateKey) *Signer {
	return &Signer{key: key, id: signing.KeyID(key.Public().(ed25519.PublicKey))}
}

// LoadSigner reads a command private key file (kanade command-key
// generate). A file that group or others may read is refused on Unix: a
// key that leaked to another account signs for the whole fleet. Errors
// never contain key material.
func LoadSigner(path string) (*Signer, error) {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("command key file %s does not exist (create one with `kanade command-key generate --dir DIR`)", path)
		}
		return nil, fmt.Errorf("command key file: %w", err)
	}
	key, err := signing.LoadPrivate(path, signing.PurposeCommand)
	if err != nil {
		return nil, fmt.Errorf("command key file %s: %w", path, err)
	}
	// Checked after parsing so that a public key given by mistake is
	// reported as such, not as a mode problem.
	if err := checkPrivate(path, st); err != nil {
		return nil, err
	}
	return NewSigner(key), nil
}

// KeyID is the id of the key (its fingerprint in agents' heartbeats).
func (s *Signer) KeyID() string { return s.id }

func (s *Signer) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Sign returns the signature headers of body for target, valid from now
// until expires (both truncated to the second). It refuses what an
// endpoint would refuse: a bad target or a validity that is not positive
// or longer than MaxLifetime.
func (s *Signer) Sign(target string, body []byte, expires time.Time) (nats.Header, error) {
	e := Envelope{Alg: Alg, KeyID: s.id, Time: s.now().UTC().Truncate(time.Second), Target: target, Expires: expires.UTC().Truncate(time.Second)}
	if life := e.Expires.Sub(e.Time); life <= 0 || life > MaxLifetime {
		return nil, fmt.Errorf("%w: expiry %s is %s after the signing time; expected more than 0 and at most %s",
			ErrLifetime, e.Expires.Format(TimeFormat), life, MaxLifetime)
	}
	msg, err := Message(e, body)
	if err != nil {
		return nil, err
	}
	h := nats.Header{}
	h.Set(HeaderAlg, e.Alg)
	h.Set(HeaderKey, e.KeyID)
	h.Set(HeaderTime, e.Time.Format(TimeFormat))
	h.Set(HeaderTarget, e.Target)
	h.Set(HeaderExpires, e.Expires.Format(TimeFormat))
	h.Set(HeaderSig, base64.StdEncoding.EncodeToString(ed25519.Sign(s.key, msg)))
	return h, nil
}

// SignCommand signs the exact bytes of a command about to be published on
// subject. It expires after MaxLifetime (as long as EXEC keeps it for an
// offline endpoint), or an hour after the command's deadline_at when that
// is sooner. A deadline already past still gets that hour from now, so
// the endpoint answers with the deadline's exit 125 rather than a
// signature refusal.
func (s *Signer) SignCommand(subject string, body []byte, deadline *time.Time) (nats.Header, error) {
	target, err := TargetOfSubject(subject)
	if err != nil {
		return nil, err
	}
	now := s.now()
	expires := now.Add(MaxLifetime)
	if deadline != nil {
		d := *deadline
		if d.Before(now) {
			d = now
		}
		if d = d.Add(deadlineGrace); d.Before(expires) {
			expires = d
		}
	}
	return s.Sign(target, body, expires)
}
