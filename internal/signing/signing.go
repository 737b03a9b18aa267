// Package signing holds kanade's Ed25519 keys: generation, the key files
// operators keep, the key rings endpoints trust, and verification.
//
// Key files are one line of text so they can be inspected, mailed and
// concatenated into a ring:
//
//	kanade-<purpose>-key ed25519 <base64 public key>            (NAME.pub)
//	kanade-<purpose>-private-key ed25519 <base64 seed>          (NAME.key, mode 0600)
//
// A ring is any number of public-key lines (blank lines and # comments
// allowed). Key ids are the first 16 hex digits of SHA-256(public key).
// Private keys are never printed or logged.
package signing

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Purposes of keys; a release key cannot be used as a command key.
const (
	PurposeRelease = "release"
	PurposeCommand = "command"
)

// KeyID identifies a public key.
func KeyID(pub ed25519.PublicKey) string {
	s := sha256.Sum256(pub)
	return hex.EncodeToString(s[:8])
}

// Generate writes DIR/<purpose>.key (0600) and DIR/<purpose>.pub and returns
// the key id. It refuses to overwrite an existing private key.
func Generate(dir, purpose string) (string, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	keyPath := filepath.Join(dir, purpose+".key")
	f, err := os.OpenFile(keyPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("%s already exists; refusing to overwrite a private key", keyPath)
		}
		return "", err
	}
	line := fmt.Sprintf("kanade-%s-private-key ed25519 %s\n", purpose, base64.StdEncoding.EncodeToString(priv.Seed()))
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, purpose+".pub"), []byte(PublicLine(purpose, pub)), 0o644); err != nil {
		return "", err
	}
	return KeyID(pub), nil
}

// PublicLine is the ring/file line for pub.
func PublicLine(purpose string, pub ed25519.PublicKey) string {
	return fmt.Sprintf("kanade-%s-key ed25519 %s\n", purpose, base64.StdEncoding.EncodeToString(pub))
}

// LoadPrivate reads a private key file of the given purpose.
func LoadPrivate(path, purpose string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParsePrivate(b, purpose)
}

// ParsePrivate decodes a private key line; the error never echoes key
// material.
func ParsePrivate(b []byte, purpose string) (ed25519.PrivateKey, error) {
	f := strings.Fields(string(b))
	want := "kanade-" + purpose + "-private-key"
	if len(f) != 3 || f[0] != want || f[1] != "ed25519" {
		return nil, fmt.Errorf("not a %s private key file (expected one line: %q ed25519 <base64>)", purpose, want)
	}
	seed, err := base64.StdEncoding.DecodeString(f[2])
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%s private key: malformed key material", purpose)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// Ring is a set of trusted public keys of one purpose.
type Ring struct {
	purpose string
	keys    map[string]ed25519.PublicKey
}

// ParseRing decodes ring text. An empty ring is valid (no line); any
// malformed line fails the whole ring, so a damaged file never silently
// drops a key.
func ParseRing(b []byte, purpose string) (*Ring, error) {
	r := &Ring{purpose: purpose, keys: map[string]ed25519.PublicKey{}}
	sc := bufio.NewScanner(bytes.NewReader(b))
	want := "kanade-" + purpose + "-key"
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != want || f[1] != "ed25519" {
			return nil, fmt.Errorf("line %d: expected %q ed25519 <base64 public key>", n, want)
		}
		pub, err := base64.StdEncoding.DecodeString(f[2])
		if err != nil || len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("line %d: malformed public key", n)
		}
		r.keys[KeyID(pub)] = ed25519.PublicKey(pub)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return r, nil
}

// LoadRing reads a ring file.
func LoadRing(path, purpose string) (*Ring, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r, err := ParseRing(b, purpose)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// Len is the number of keys.
func (r *Ring) Len() int {
	if r == nil {
		return 0
	}
	return len(r.keys)
}

// IDs lists the key ids (fingerprints), sorted.
func (r *Ring) IDs() []string {
	ids := []string{}
	if r == nil {
		return ids
	}
	for id := range r.keys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Errors of Verify.
var (
	ErrUnsigned   = errors.New("not signed")
	ErrUnknownKey = errors.New("signed by a key this endpoint does not trust")
	ErrBadSig     = errors.New("signature does not verify")
)

// Verify checks sig over msg by the key keyID.
func (r *Ring) Verify(msg, sig []byte, keyID string) error {
	if len(sig) == 0 {
		return ErrUnsigned
	}
	if r == nil {
		return fmt.Errorf("%w (key id %q)", ErrUnknownKey, keyID)
	}
	pub, ok := r.keys[keyID]
	if !ok {
		return fmt.Errorf("%w (key id %q)", ErrUnknownKey, keyID)
	}
	if !ed25519.Verify(pub, msg, sig) {
		return ErrBadSig
	}
	return nil
}
