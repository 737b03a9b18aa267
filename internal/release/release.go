// Package release is the contract for agent binaries in the
// agent_releases object store: one object per version and platform, named
// <version>/<os>-<arch>, carrying in its metadata a release record (version,
// os, arch, size, sha256) and an Ed25519 signature over the record's exact
// bytes.
//
// Publishing and reading share this package so the CLI and the agent can
// never disagree on names or encodings. Verification is strict: the record
// must match the object (name, size), the downloaded bytes must match the
// record's digest, and — when the endpoint trusts any release key — the
// signature must verify with one of them.
package release

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kanade-project/kanade/internal/signing"
)

// Metadata keys on the object.
const (
	MetaRecord    = "kanade-release"
	MetaSignature = "kanade-signature"
)

// Record describes one published binary.
type Record struct {
	Version     string    `json:"version"`
	OS          string    `json:"os"`
	Arch        string    `json:"arch"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	PublishedAt time.Time `json:"published_at"`
	// KeyID is the signing key's id; empty for an unsigned release.
	KeyID string `json:"key_id,omitempty"`
}

// ObjectName is the object of version for os/arch.
func ObjectName(version, goos, arch string) string {
	return version + "/" + goos + "-" + arch
}

// ParseObjectName splits an object name into version, os and arch.
func ParseObjectName(name string) (version, goos, arch string, ok bool) {
	v, plat, ok := strings.Cut(name, "/")
	if !ok {
		return "", "", "", false
	}
	goos, arch, ok = strings.Cut(plat, "-")
	return v, goos, arch, ok && v != "" && goos != "" && arch != ""
}

// Encode returns the canonical bytes of r (what is signed).
func (r Record) Encode() []byte {
	b, _ := json.Marshal(r)
	return b
}

// Metadata returns the object metadata carrying the record and signature.
func Metadata(record, sig []byte) map[string]string {
	m := map[string]string{MetaRecord: base64.StdEncoding.EncodeToString(record)}
	if len(sig) > 0 {
		m[MetaSignature] = base64.StdEncoding.EncodeToString(sig)
	}
	return m
}

// FromMetadata decodes the record (its exact bytes too) and signature of an
// object.
func FromMetadata(meta map[string]string) (Record, []byte, []byte, error) {
	var r Record
	enc, ok := meta[MetaRecord]
	if !ok {
		return r, nil, nil, errors.New("object has no release record")
	}
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return r, nil, nil, fmt.Errorf("release record: %w", err)
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return r, nil, nil, fmt.Errorf("release record: %w", err)
	}
	var sig []byte
	if s, ok := meta[MetaSignature]; ok {
		if sig, err = base64.StdEncoding.DecodeString(s); err != nil {
			return r, nil, nil, fmt.Errorf("release signature: %w", err)
		}
	}
	return r, raw, sig, nil
}

// Check verifies that the record describes the object it came with and,
// when ring holds any key, that it is signed by one of them. A nil or
// empty ring accepts unsigned releases (the digest is still checked on
// download).
func Check(objectName string, objectSize uint64, rec Record, raw, sig []byte, ring *signing.Ring) error {
	if ObjectName(rec.Version, rec.OS, rec.Arch) != objectName {
		return fmt.Errorf("release record names %s but the object is %s", ObjectName(rec.Version, rec.OS, rec.Arch), objectName)
	}
	if rec.Size < 0 || uint64(rec.Size) != objectSize {
		return fmt.Errorf("release record says %d bytes but the object has %d", rec.Size, objectSize)
	}
	if !isDigest(rec.SHA256) {
		// Checked before the download: a digest the download's
		// lowercase hex can never equal would cost a full download to
		// refuse.
		return fmt.Errorf("release record sha256 %q is not 64 lowercase hex digits", rec.SHA256)
	}
	if ring.Len() == 0 {
		return nil
	}
	if err := ring.Verify(raw, sig, rec.KeyID); err != nil {
		return fmt.Errorf("release signature: %w", err)
	}
	return nil
}

// isDigest reports whether s is a SHA-256 in lowercase hex, as Publish
// writes it and Fetch compares it.
func isDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
