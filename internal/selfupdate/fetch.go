package selfupdate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/release"
	"github.com/kanade-project/kanade/internal/signing"
	"github.com/kanade-project/kanade/internal/wire"
)

// VerifyError is a release that does not verify: its record is missing or
// malformed, does not match the object, is not signed by a key of the ring,
// or the bytes do not match its size or SHA-256. Retrying cannot fix it;
// any other error from Fetch (broker, network, writer) can be retried.
type VerifyError struct{ Err error }

func (e *VerifyError) Error() string { return "release does not verify: " + e.Err.Error() }
func (e *VerifyError) Unwrap() error { return e.Err }

// Fetch downloads and verifies the release object name from agent_releases:
// it reads the object's info, decodes and checks its release record (name,
// size, and the Ed25519 signature when ring trusts keys) before a single
// byte is fetched, then calls open with the record for the writer the bytes
// go to (nil: the bytes are only hashed), streams the object into it —
// never held in memory: a 32 MiB GetBytes peaked at 258 MB RSS in the
// agent — and compares the byte count and SHA-256 with the record.
//
// It is the agent updater's download and the rollout benchmark's, so the
// benchmark measures the calls the fleet makes. open is called at most
// once, and only for a record that verified; the caller owns what it
// returns (closing it, and discarding it when Fetch fails). A *VerifyError
// is returned for anything that does not verify; n is the number of bytes
// written.
func Fetch(ctx context.Context, js jetstream.JetStream, name string, ring *signing.Ring, open func(release.Record) (io.Writer, error)) (rec release.Record, n int64, err error) {
	obs, err := js.ObjectStore(ctx, wire.ObjectAgentReleases)
	if err != nil {
		return rec, 0, fmt.Errorf("object store %s: %w", wire.ObjectAgentReleases, err)
	}
	info, err := obs.GetInfo(ctx, name)
	if err != nil {
		return rec, 0, fmt.Errorf("release %s: %w", name, err)
	}
	rec, raw, sig, err := release.FromMetadata(info.Metadata)
	if err != nil {
		return rec, 0, &VerifyError{err}
	}
	if err := release.Check(name, info.Size, rec, raw, sig, ring); err != nil {
		return rec, 0, &VerifyError{err}
	}
	w, err := open(rec)
	if err != nil {
		return rec, 0, err
	}
	h := sha256.New()
	dst := io.Writer(h)
	if w != nil {
		dst = io.MultiWriter(w, h)
	}
	r, err := obs.Get(ctx, name)
	if err != nil {
		return rec, 0, fmt.Errorf("downloading %s: %w", name, err)
	}
	n, err = io.Copy(dst, r)
	r.Close()
	if err != nil {
		return rec, n, fmt.Errorf("downloading %s: %w", name, err)
	}
	if n != rec.Size {
		return rec, n, &VerifyError{fmt.Errorf("downloaded %d bytes, the release record says %d", n, rec.Size)}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != rec.SHA256 {
		return rec, n, &VerifyError{fmt.Errorf("sha256 of the download is %s, the release record says %s", got, rec.SHA256)}
	}
	return rec, n, nil
}
