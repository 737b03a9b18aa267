package release_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/fleetconfig"
	"github.com/kanade-project/kanade/internal/release"
	"github.com/kanade-project/kanade/internal/signing"
)

// fuzzKey is a fixed release key, so that seeds can carry valid signatures.
var fuzzKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

func fuzzRing(t testing.TB) *signing.Ring {
	r, err := signing.ParseRing([]byte(signing.PublicLine(signing.PurposeRelease, fuzzKey.Public().(ed25519.PublicKey))), signing.PurposeRelease)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// FuzzReleaseRecord decodes an object's release record and signature as
// the agent's self-update does (FromMetadata, then Check against the
// object it asked for) from arbitrary metadata. Whatever passes describes
// exactly the object asked for (name, size) with a lowercase hex SHA-256
// the download can be compared with; with a trusted key it is signed by
// that key over the exact record bytes. Every refusal says why. A
// record's canonical encoding reads back as the same record, and the
// version label rules agree with the fleet config's target_version rules.
func FuzzReleaseRecord(f *testing.F) {
	rec := release.Record{Version: "1.2.3", OS: "linux", Arch: "amd64", Size: 8 << 20,
		SHA256:      "8a1c4c1ab5a3c2c0c73d3c4e6c5b6e2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d",
		PublishedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), KeyID: signing.KeyID(fuzzKey.Public().(ed25519.PublicKey))}
	raw := rec.Encode()
	f.Add(raw, ed25519.Sign(fuzzKey, raw), "1.2.3/linux-amd64", uint64(8<<20), false)
	f.Add(raw, []byte{}, "1.2.3/linux-amd64", uint64(8<<20), false)
	f.Add([]byte(`{"version":"../x","os":"linux","arch":"amd64","size":-1,"sha256":"`+strings.Repeat("A", 64)+`"}`), []byte{1}, "../x/linux-amd64", uint64(1<<63), false)
	f.Add([]byte("eyJ2ZXJzaW9uIjoiMSJ9"), []byte("%%%"), "1/linux-amd64", uint64(0), true)
	f.Fuzz(func(t *testing.T, record, sig []byte, name string, size uint64, rawMeta bool) {
		meta := release.Metadata(record, sig)
		if rawMeta {
			// Metadata as stored by something other than Publish.
			meta = map[string]string{release.MetaRecord: string(record), release.MetaSignature: string(sig)}
		}
		r, rawRec, gotSig, err := release.FromMetadata(meta)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("FromMetadata failed with an empty message")
			}
			return
		}
		if !rawMeta && (!bytes.Equal(rawRec, record) || !bytes.Equal(gotSig, sig)) {
			t.Fatalf("FromMetadata changed the bytes: %q %q, want %q %q", rawRec, gotSig, record, sig)
		}
		for _, ring := range []*signing.Ring{nil, fuzzRing(t)} {
			err := release.Check(name, size, r, rawRec, gotSig, ring)
			if err != nil {
				if err.Error() == "" {
					t.Fatal("Check failed with an empty message")
				}
				continue
			}
			if release.ObjectName(r.Version, r.OS, r.Arch) != name || r.Size < 0 || uint64(r.Size) != size {
				t.Fatalf("Check passed %+v for object %q of %d bytes", r, name, size)
			}
			if len(r.SHA256) != 64 || strings.Trim(r.SHA256, "0123456789abcdef") != "" {
				t.Fatalf("Check passed digest %q", r.SHA256)
			}
			if ring.Len() > 0 && !ed25519.Verify(fuzzKey.Public().(ed25519.PublicKey), rawRec, gotSig) {
				t.Fatalf("Check passed a record the trusted key did not sign: %q", rawRec)
			}
		}
		// The canonical encoding (what Publish signs) is a fixed point.
		enc := r.Encode()
		back, _, _, err := release.FromMetadata(release.Metadata(enc, nil))
		if err != nil || !back.PublishedAt.Equal(r.PublishedAt) {
			t.Fatalf("canonical record %s reads back as %+v, %v", enc, back, err)
		}
		back.PublishedAt = r.PublishedAt
		if back != r || !bytes.Equal(back.Encode(), enc) {
			t.Fatalf("canonical record %s reads back as %+v, want %+v", enc, back, r)
		}
		// A version label publish accepts is a target_version rollout can
		// set, and the other way round.
		v, _ := json.Marshal(r.Version)
		_, ferr := fleetconfig.ValidateValue("target_version", v)
		if rerr := release.CheckVersion(r.Version); (rerr == nil) != (ferr == nil) {
			t.Fatalf("version %q: release says %v, fleet config says %v", r.Version, rerr, ferr)
		}
	})
}
