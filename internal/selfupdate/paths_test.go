package selfupdate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/release"
	"github.com/kanade-project/kanade/internal/wire"
)

// TestStagingPathStaysInTheStagingDir: the staging file is named after the
// release, whose version comes from KV. Only a plain version label and
// platform make a file, and always directly inside the staging dir.
func TestStagingPathStaysInTheStagingDir(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, want, err string
	}{
		{name: "1.2.3/linux-amd64", want: "1.2.3_linux-amd64.download"},
		{name: "v2.0.0-rc.1+b7/windows-arm64", want: "v2.0.0-rc.1+b7_windows-arm64.download"},
		{name: "../../evil/linux-amd64", err: `must not start with '.'`},
		{name: "..", err: "is not <version>/<os>-<arch>"},
		{name: "1..2/linux-amd64", err: `contain ".."`},
		{name: `..\..\evil/windows-amd64`, err: "may contain only letters"},
		{name: "1.0:stream/windows-amd64", err: "may contain only letters"},
		{name: "C:/windows-amd64", err: "may contain only letters"},
		{name: "1.0\x00/linux-amd64", err: "may contain only letters"},
		{name: strings.Repeat("9", 65) + "/linux-amd64", err: "1-64 characters"},
		{name: "1.0/linux-amd64/../../x", err: "is not <os>-<arch>"},
		{name: `1.0/windows-amd64\..\x`, err: "is not <os>-<arch>"},
		{name: "1.0/Linux-AMD64", err: "is not <os>-<arch>"},
		{name: "1.0/linux", err: "is not <version>/<os>-<arch>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := stagingPath(dir, tc.name)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("stagingPath(%q) = %q, %v; want an error containing %q", tc.name, p, err, tc.err)
				}
				return
			}
			if err != nil || p != filepath.Join(dir, tc.want) || filepath.Dir(p) != dir {
				t.Fatalf("stagingPath(%q) = %q, %v; want %q", tc.name, p, err, filepath.Join(dir, tc.want))
			}
		})
	}
}

// TestUpdaterRefusesAPathLikeTarget: a target_version that bypassed the
// fleet config's check (the agent never trusts KV to have been written by
// kanade) is refused and reported before anything is read or written.
func TestUpdaterRefusesAPathLikeTarget(t *testing.T) {
	for _, target := range []string{"../../evil", `..\..\evil`, "1.0/../../x", "c:evil", "1.0\x00", strings.Repeat("1", 100)} {
		t.Run(target, func(t *testing.T) {
			root := t.TempDir()
			var mu sync.Mutex
			var reasons []string
			u := New(Options{
				Version: "1.0.0", GOOS: "linux", GOARCH: "amd64",
				Exe: filepath.Join(root, "bin", "kanade-agent"), StagingDir: filepath.Join(root, "data", "staging"),
				Logger: slog.New(slog.DiscardHandler),
				Obs: func(kind, _ string, payload any) {
					mu.Lock()
					defer mu.Unlock()
					if m, ok := payload.(map[string]string); ok && kind == ObsUpdateRefused {
						reasons = append(reasons, m["reason"])
					}
				},
			})
			// Returns at once: a valid target would block here waiting
			// for the running binary to become healthy.
			u.attempt(context.Background(), target, 0)
			mu.Lock()
			defer mu.Unlock()
			if len(reasons) != 1 || !strings.HasPrefix(reasons[0], "target_version: version") {
				t.Fatalf("refusals = %q, want one naming target_version", reasons)
			}
			if des, _ := os.ReadDir(root); len(des) != 0 {
				t.Fatalf("the refused update created %v", des)
			}
		})
	}
}

// TestFetchRefusesBadRecordsBeforeDownloading: records as the agent reads
// them from a real object store. One that does not describe its object,
// or whose digest the download's could never equal, is refused before a
// staging file is opened.
func TestFetchRefusesBadRecordsBeforeDownloading(t *testing.T) {
	srv := brokertest.Start(t)
	js := srv.JetStream(t)
	ctx := context.Background()
	obs, err := js.ObjectStore(ctx, wire.ObjectAgentReleases)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte("not really a binary")
	good := release.Record{Version: "1.0.0", OS: "linux", Arch: "amd64", Size: int64(len(body)),
		SHA256: "8a1c4c1ab5a3c2c0c73d3c4e6c5b6e2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d", PublishedAt: time.Now().UTC()}
	for _, tc := range []struct {
		name string
		meta map[string]string
		want string
	}{
		{"no record", map[string]string{}, "has no release record"},
		{"record not base64", map[string]string{release.MetaRecord: "%%%"}, "release record: illegal base64"},
		{"record not JSON", release.Metadata([]byte("{"), nil), "release record: unexpected end of JSON input"},
		{"record for another version", withRecord(good, func(r *release.Record) { r.Version = "../1.0.0" }), "release record names ../1.0.0/linux-amd64 but the object is"},
		{"negative size", withRecord(good, func(r *release.Record) { r.Size = -1 }), "release record says -1 bytes"},
		{"uppercase digest", withRecord(good, func(r *release.Record) { r.SHA256 = strings.ToUpper(r.SHA256) }), "is not 64 lowercase hex digits"},
		{"digest not hex", withRecord(good, func(r *release.Record) { r.SHA256 = strings.Repeat("z", 64) }), "is not 64 lowercase hex digits"},
		{"short digest", withRecord(good, func(r *release.Record) { r.SHA256 = "abc" }), "is not 64 lowercase hex digits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := release.ObjectName("1.0.0", "linux", "amd64")
			if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: name, Metadata: tc.meta}, bytes.NewReader(body)); err != nil {
				t.Fatal(err)
			}
			opened := false
			_, _, err := Fetch(ctx, js, name, nil, func(release.Record) (io.Writer, error) {
				opened = true
				return io.Discard, nil
			})
			var bad *VerifyError
			if !errors.As(err, &bad) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Fetch = %v, want a VerifyError containing %q", err, tc.want)
			}
			if opened {
				t.Fatal("a staging writer was opened for a record that does not verify")
			}
		})
	}
}

// withRecord returns the metadata of good changed by edit, unsigned.
func withRecord(good release.Record, edit func(*release.Record)) map[string]string {
	r := good
	edit(&r)
	b, _ := json.Marshal(r)
	return release.Metadata(b, nil)
}
