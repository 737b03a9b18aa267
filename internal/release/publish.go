package release

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/signing"
	"github.com/kanade-project/kanade/internal/wire"
)

// PublishOptions describe one upload.
type PublishOptions struct {
	Path    string
	Version string
	OS      string
	Arch    string
	// Key signs the record; nil publishes unsigned.
	Key ed25519.PrivateKey
	// Wrap, when set, wraps the upload reader (a progress bar).
	Wrap func(io.Reader, int64) io.Reader
}

// Publish hashes the file, signs its release record and uploads both to
// agent_releases. It changes no config: rollout is a separate step.
func Publish(ctx context.Context, js jetstream.JetStream, o PublishOptions) (Record, error) {
	if err := CheckVersion(o.Version); err != nil {
		return Record{}, err
	}
	f, err := os.Open(o.Path)
	if err != nil {
		return Record{}, err
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return Record{}, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Record{}, err
	}
	rec := Record{Version: o.Version, OS: o.OS, Arch: o.Arch, Size: size, SHA256: hex.EncodeToString(h.Sum(nil)), PublishedAt: time.Now().UTC().Truncate(time.Second)}
	var sig []byte
	if o.Key != nil {
		rec.KeyID = signing.KeyID(o.Key.Public().(ed25519.PublicKey))
	}
	raw := rec.Encode()
	if o.Key != nil {
		sig = ed25519.Sign(o.Key, raw)
	}
	obs, err := js.ObjectStore(ctx, wire.ObjectAgentReleases)
	if err != nil {
		return Record{}, fmt.Errorf("object store %s: %w (run `kanade jetstream setup`)", wire.ObjectAgentReleases, err)
	}
	var r io.Reader = f
	if o.Wrap != nil {
		r = o.Wrap(f, size)
	}
	name := ObjectName(o.Version, o.OS, o.Arch)
	if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: name, Description: "kanade-agent " + o.Version + " " + o.OS + "/" + o.Arch, Metadata: Metadata(raw, sig)}, r); err != nil {
		return Record{}, fmt.Errorf("uploading %s: %w", name, err)
	}
	return rec, nil
}

// CheckVersion validates a version label. It is part of object names and,
// on the agent, of the staging file name, so besides the character set it
// refuses the path-like "." and ".." forms: a leading dot or "..".
func CheckVersion(v string) error {
	if v == "" || len(v) > 64 {
		return errors.New("version must be 1-64 characters")
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-+_", r)) {
			return fmt.Errorf("version %q may contain only letters, digits and . - + _", v)
		}
	}
	if strings.HasPrefix(v, ".") || strings.Contains(v, "..") {
		return fmt.Errorf("version %q must not start with '.' or contain \"..\"", v)
	}
	return nil
}

// Published is one release as listed.
type Published struct {
	Name   string
	Record Record
	// Signed reports a signature is present (not that it verifies).
	Signed bool
	Err    error
}

// List returns every published release, sorted by name.
func List(ctx context.Context, js jetstream.JetStream) ([]Published, error) {
	obs, err := js.ObjectStore(ctx, wire.ObjectAgentReleases)
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", wire.ObjectAgentReleases, err)
	}
	infos, err := obs.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Published
	for _, info := range infos {
		rec, _, sig, err := FromMetadata(info.Metadata)
		out = append(out, Published{Name: info.Name, Record: rec, Signed: len(sig) > 0, Err: err})
	}
	slices.SortFunc(out, func(a, b Published) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
