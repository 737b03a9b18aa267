package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/release"
	"github.com/kanade-project/kanade/internal/signing"
	"github.com/kanade-project/kanade/internal/wire"
)

// relFleet is a real broker with every kanade resource, the CLI run
// in-process against it, and direct access to KV and the object store.
type relFleet struct {
	t   *testing.T
	srv *brokertest.Server
	js  jetstream.JetStream
}

func newRelFleet(t *testing.T) *relFleet {
	srv := brokertest.Start(t)
	return &relFleet{t: t, srv: srv, js: srv.JetStream(t)}
}

func (f *relFleet) kanade(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := Main(append([]string{"--server", f.srv.URL()}, args...), strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

func (f *relFleet) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	f.t.Cleanup(cancel)
	return ctx
}

func (f *relFleet) obs() jetstream.ObjectStore {
	f.t.Helper()
	o, err := f.js.ObjectStore(f.ctx(), wire.ObjectAgentReleases)
	if err != nil {
		f.t.Fatal(err)
	}
	return o
}

func (f *relFleet) configKV() jetstream.KeyValue {
	f.t.Helper()
	kv, err := f.js.KeyValue(f.ctx(), wire.BucketAgentConfig)
	if err != nil {
		f.t.Fatal(err)
	}
	return kv
}

// config returns the stored value and revision of an agent_config key
// (revision 0: absent).
func (f *relFleet) config(key string) (string, uint64) {
	f.t.Helper()
	e, err := f.configKV().Get(f.ctx(), key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", 0
	}
	if err != nil {
		f.t.Fatal(err)
	}
	return string(e.Value()), e.Revision()
}

// configSeq is the last sequence of agent_config's stream: it moves on any
// write (put, delete, purge) to any key.
func (f *relFleet) configSeq() uint64 {
	f.t.Helper()
	s, err := f.js.Stream(f.ctx(), "KV_"+wire.BucketAgentConfig)
	if err != nil {
		f.t.Fatal(err)
	}
	info, err := s.Info(f.ctx())
	if err != nil {
		f.t.Fatal(err)
	}
	return info.State.LastSeq
}

// seed publishes a file of arbitrary bytes as a release, as `agent
// publish` would after detection (signed when key is not nil).
func (f *relFleet) seed(version, goos, goarch string, key []byte) release.Record {
	f.t.Helper()
	p := filepath.Join(f.t.TempDir(), "bin")
	if err := os.WriteFile(p, []byte("binary "+version+" "+goos+"/"+goarch), 0o644); err != nil {
		f.t.Fatal(err)
	}
	o := release.PublishOptions{Path: p, Version: version, OS: goos, Arch: goarch}
	if key != nil {
		o.Key = key
	}
	rec, err := release.Publish(f.ctx(), f.js, o)
	if err != nil {
		f.t.Fatal(err)
	}
	return rec
}

func relContains(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s does not contain %q:\n%s", what, sub, s)
		}
	}
}

func relJSONEqual(t *testing.T, got, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Errorf("not JSON: %q: %v", got, err)
		return false
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want %q: %v", want, err)
	}
	return reflect.DeepEqual(g, w)
}

// generateKey runs `release-key generate` and returns the key file and
// the ring made of the public key.
func generateKey(t *testing.T, f *relFleet) (string, *signing.Ring) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	if code, out, errOut := f.kanade("release-key", "generate", "--dir", dir); code != 0 {
		t.Fatalf("release-key generate = %d %s %s", code, out, errOut)
	}
	ring, err := signing.LoadRing(filepath.Join(dir, "release.pub"), signing.PurposeRelease)
	if err != nil || ring.Len() != 1 {
		t.Fatalf("ring: %v (%d keys)", err, ring.Len())
	}
	return filepath.Join(dir, "release.key"), ring
}

func TestReleaseKeyGenerate(t *testing.T) {
	f := newRelFleet(t)
	dir := filepath.Join(t.TempDir(), "keys")
	keyPath, pubPath := filepath.Join(dir, "release.key"), filepath.Join(dir, "release.pub")

	code, out, errOut := f.kanade("release-key", "generate", "--dir", dir)
	if code != 0 {
		t.Fatalf("generate = %d %q %q", code, out, errOut)
	}
	keyBytes, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm() != 0o600 {
		t.Errorf("release.key mode = %s, want 0600", st.Mode().Perm())
	}
	ring, err := signing.LoadRing(pubPath, signing.PurposeRelease)
	if err != nil || ring.Len() != 1 {
		t.Fatalf("release.pub is not a one-key release ring: %v", err)
	}
	id := ring.IDs()[0]
	priv, err := signing.LoadPrivate(keyPath, signing.PurposeRelease)
	if err != nil {
		t.Fatal(err)
	}
	relContains(t, "generate output", out, id, keyPath, pubPath, "release_keys_file", "ReleaseKeys", `HKLM\SOFTWARE\Kanade\Agent`, "release manager")

	// The private key, in any encoding, never reaches the terminal.
	fields := strings.Fields(string(keyBytes))
	secrets := []string{
		fields[len(fields)-1], // the base64 seed as stored
		base64.StdEncoding.EncodeToString(priv),
		base64.RawStdEncoding.EncodeToString(priv.Seed()),
		hex.EncodeToString(priv.Seed()),
		"private-key ed25519",
	}
	for _, s := range secrets {
		if strings.Contains(out, s) || strings.Contains(errOut, s) {
			t.Errorf("private key material %q printed:\nstdout: %s\nstderr: %s", s, out, errOut)
		}
	}

	tests := []struct {
		name    string
		args    []string
		setup   func(t *testing.T) string // returns the dir to use
		code    int
		wantErr string
	}{
		{"second run refuses", nil, func(*testing.T) string { return dir }, exitFailure, "release.key already exists; refusing to overwrite"},
		{"lone public key refused", nil, func(t *testing.T) string {
			d := filepath.Join(t.TempDir(), "ring-only")
			if err := os.MkdirAll(d, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, "release.pub"), []byte("# ring copied from an endpoint\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			return d
		}, exitFailure, "release.pub already exists; refusing to overwrite"},
		{"missing --dir", []string{"release-key", "generate"}, nil, exitUsage, "--dir is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			var d string
			var before map[string][]byte
			if tt.setup != nil {
				d = tt.setup(t)
				args = []string{"release-key", "generate", "--dir", d}
				before = readDir(t, d)
			}
			code, out, errOut := f.kanade(args...)
			if code != tt.code || !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("= %d %q %q; want %d and %q", code, out, errOut, tt.code, tt.wantErr)
			}
			if d != "" && !reflect.DeepEqual(readDir(t, d), before) {
				t.Errorf("the files in %s changed", d)
			}
		})
	}
}

func readDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = b
	}
	return m
}

// testAgents are tiny Go programs that print a version on --version, like
// kanade-agent.
type testAgents struct {
	native     string // for this machine, reports 1.2.3
	nativeDev  string // for this machine, built without a version (reports dev)
	foreign    string // for another platform, reports 1.2.3
	foreignOS  string
	foreignArc string
}

const tinyAgent = `package main

import (
	"fmt"
	"os"
)

var version = "dev"

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--version" {
		fmt.Println(version)
		return
	}
	os.Exit(3)
}
`

// buildAgents builds the test binaries in parallel into a temporary
// directory of t (the Go build cache keeps this to a link per binary).
func buildAgents(t *testing.T) testAgents {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"go.mod": "module tinyagent\n\ngo 1.26\n", "main.go": tinyAgent} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var agents testAgents
	agents.foreignOS, agents.foreignArc = "windows", "amd64"
	if runtime.GOOS == "windows" && runtime.GOARCH == "amd64" {
		agents.foreignOS, agents.foreignArc = "linux", "amd64"
	}
	exe := ""
	if runtime.GOOS == "windows" {
		exe = ".exe"
	}
	agents.native = filepath.Join(dir, "native"+exe)
	agents.nativeDev = filepath.Join(dir, "native-dev"+exe)
	agents.foreign = filepath.Join(dir, "foreign")
	builds := []struct{ out, goos, goarch, version string }{
		{agents.native, runtime.GOOS, runtime.GOARCH, "1.2.3"},
		{agents.nativeDev, runtime.GOOS, runtime.GOARCH, ""},
		{agents.foreign, agents.foreignOS, agents.foreignArc, "1.2.3"},
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var errs []error
	for _, b := range builds {
		wg.Go(func() {
			ld := "-s -w"
			if b.version != "" {
				ld += " -X main.version=" + b.version
			}
			cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ld, "-o", b.out, ".")
			cmd.Dir = src
			cmd.Env = append(os.Environ(), "GOOS="+b.goos, "GOARCH="+b.goarch, "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=")
			if out, err := cmd.CombinedOutput(); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("go build %s/%s: %v\n%s", b.goos, b.goarch, err, out))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return agents
}

func fileSum(t *testing.T, path string) (string, int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:]), int64(len(b))
}

// storedRelease reads an object's info and record and checks the record
// against the object with ring (nil: no signature required).
func (f *relFleet) storedRelease(name string, ring *signing.Ring) (*jetstream.ObjectInfo, release.Record, error) {
	f.t.Helper()
	info, err := f.obs().GetInfo(f.ctx(), name)
	if err != nil {
		f.t.Fatalf("object %s: %v", name, err)
	}
	rec, raw, sig, err := release.FromMetadata(info.Metadata)
	if err != nil {
		f.t.Fatalf("object %s: %v", name, err)
	}
	return info, rec, release.Check(name, info.Size, rec, raw, sig, ring)
}

// pretendTerminal makes the CLI believe stderr is a terminal (or not).
func pretendTerminal(t *testing.T, yes bool) {
	old := isTerminal
	isTerminal = func(io.Writer) bool { return yes }
	t.Cleanup(func() { isTerminal = old })
}

// TestAgentPublish publishes real Go binaries and checks what lands in
// agent_releases, what is refused, and that no configuration changes.
func TestAgentPublish(t *testing.T) {
	bins := buildAgents(t)
	f := newRelFleet(t)
	keyFile, ring := generateKey(t, f)
	keyID := ring.IDs()[0]
	nativePlat := runtime.GOOS + "-" + runtime.GOARCH
	foreignPlat := bins.foreignOS + "-" + bins.foreignArc
	nativeObj := release.ObjectName("1.2.3", runtime.GOOS, runtime.GOARCH)
	seq0 := f.configSeq()
	t.Setenv(EnvReleaseKey, "")

	// Refusals first: nothing may be uploaded by any of them.
	textFile := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(textFile, []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	refusals := []struct {
		name    string
		env     string
		args    []string
		code    int
		wantErr []string
	}{
		{"no key and no --unsigned", "", []string{bins.native}, exitUsage, []string{"--release-key", "--unsigned", EnvReleaseKey}},
		{"--unsigned with --release-key", "", []string{bins.native, "--unsigned", "--release-key", keyFile}, exitUsage, []string{"--unsigned and a release key"}},
		{"--unsigned with the env key", keyFile, []string{bins.native, "--unsigned"}, exitUsage, []string{"--unsigned and a release key", EnvReleaseKey}},
		{"foreign binary without --version", "", []string{bins.foreign, "--release-key", keyFile}, exitUsage, []string{bins.foreignOS + "/" + bins.foreignArc, "cannot run on this", "pass --version"}},
		{"label that lies", "", []string{bins.native, "--version", "9.9.9", "--release-key", keyFile}, exitFailure, []string{`reports version "1.2.3", not "9.9.9"`, "loop guard"}},
		{"unstamped binary", "", []string{bins.nativeDev, "--release-key", keyFile}, exitFailure, []string{`printed "dev"`, "buildinfo.Version"}},
		{"bad --version", "", []string{bins.foreign, "--version", "1.0/evil", "--release-key", keyFile}, exitUsage, []string{"may contain only"}},
		{"not an executable", "", []string{textFile, "--version", "1.2.3", "--unsigned"}, exitFailure, []string{"not an executable: expected an ELF, PE or Mach-O binary"}},
		{"not a release key", "", []string{bins.native, "--release-key", textFile}, exitFailure, []string{"not a release private key file"}},
	}
	for _, tt := range refusals {
		t.Run("refuses "+tt.name, func(t *testing.T) {
			t.Setenv(EnvReleaseKey, tt.env)
			code, out, errOut := f.kanade(append([]string{"agent", "publish"}, tt.args...)...)
			if code != tt.code {
				t.Errorf("exit %d, want %d; %s %s", code, tt.code, out, errOut)
			}
			relContains(t, "stderr", errOut, tt.wantErr...)
			relContains(t, "stderr", errOut, "nothing published")
			if _, err := f.obs().List(f.ctx()); !errors.Is(err, jetstream.ErrNoObjectsFound) {
				t.Errorf("an object was uploaded (list: %v)", err)
			}
		})
	}

	t.Run("native binary: version from the binary, signed", func(t *testing.T) {
		pretendTerminal(t, false)
		code, out, errOut := f.kanade("agent", "publish", bins.native, "--release-key", keyFile)
		if code != 0 {
			t.Fatalf("publish = %d %s %s", code, out, errOut)
		}
		sum, size := fileSum(t, bins.native)
		info, rec, err := f.storedRelease(nativeObj, ring)
		if err != nil {
			t.Errorf("record does not verify with the generated ring: %v", err)
		}
		if rec.Version != "1.2.3" || rec.OS != runtime.GOOS || rec.Arch != runtime.GOARCH || rec.SHA256 != sum || rec.Size != size || rec.KeyID != keyID {
			t.Errorf("record = %+v; want 1.2.3 %s sha256 %s size %d key %s", rec, nativePlat, sum, size, keyID)
		}
		data, err := f.obs().GetBytes(f.ctx(), nativeObj)
		if got := sha256.Sum256(data); err != nil || hex.EncodeToString(got[:]) != sum || info.Size != uint64(size) {
			t.Errorf("stored bytes differ from the file (%v)", err)
		}
		relContains(t, "stdout", out, "published agent_releases/"+nativeObj, "version:   1.2.3", "platform:  "+runtime.GOOS+"/"+runtime.GOARCH,
			fmt.Sprintf("size:      %d bytes", size), "sha256:    "+sum, "key "+keyID, "not rolled out: run kanade agent rollout 1.2.3")
		if strings.Contains(errOut, "uploading") {
			t.Errorf("progress bar drawn on a stderr that is not a terminal: %q", errOut)
		}
	})

	t.Run("duplicate refused without --force", func(t *testing.T) {
		before, _, _ := f.storedRelease(nativeObj, ring)
		code, out, errOut := f.kanade("agent", "publish", bins.native, "--release-key", keyFile)
		if code != exitFailure {
			t.Errorf("duplicate publish = %d %s %s, want %d", code, out, errOut, exitFailure)
		}
		relContains(t, "stderr", errOut, "agent_releases/"+nativeObj+" already exists", "these very bytes", "loop guard", "--force", "nothing published")
		after, _, _ := f.storedRelease(nativeObj, ring)
		if after.NUID != before.NUID {
			t.Errorf("the object was replaced (NUID %s → %s)", before.NUID, after.NUID)
		}

		code, out, errOut = f.kanade("agent", "publish", bins.native, "--release-key", keyFile, "--force")
		if code != 0 {
			t.Fatalf("publish --force = %d %s %s", code, out, errOut)
		}
		relContains(t, "stdout", out, "replaced (--force) agent_releases/"+nativeObj)
		replaced, _, err := f.storedRelease(nativeObj, ring)
		if err != nil || replaced.NUID == before.NUID {
			t.Errorf("--force did not replace the object (NUID %s, %v)", replaced.NUID, err)
		}
	})

	t.Run("foreign binary with --version, unsigned, progress bar", func(t *testing.T) {
		pretendTerminal(t, true)
		obj := release.ObjectName("1.2.3", bins.foreignOS, bins.foreignArc)
		code, out, errOut := f.kanade("agent", "publish", bins.foreign, "--version", "1.2.3", "--unsigned")
		if code != 0 {
			t.Fatalf("publish = %d %s %s", code, out, errOut)
		}
		sum, size := fileSum(t, bins.foreign)
		_, rec, err := f.storedRelease(obj, nil)
		if err != nil {
			t.Errorf("record: %v", err)
		}
		if rec.KeyID != "" || rec.SHA256 != sum || rec.Size != size || rec.OS != bins.foreignOS || rec.Arch != bins.foreignArc {
			t.Errorf("record = %+v; want unsigned %s sha256 %s", rec, foreignPlat, sum)
		}
		if _, _, err := f.storedRelease(obj, ring); !errors.Is(err, signing.ErrUnsigned) {
			t.Errorf("an endpoint with a ring would accept it: %v", err)
		}
		relContains(t, "stdout", out, "UNSIGNED", "sha256:    "+sum)
		relContains(t, "stderr (progress bar)", errOut, "uploading agent_releases/"+obj, "100%")
		relContains(t, "stderr", errOut, "cannot run here to confirm that it reports 1.2.3")
	})

	t.Run("env key, -o json, no progress bar", func(t *testing.T) {
		pretendTerminal(t, true)
		t.Setenv(EnvReleaseKey, keyFile)
		code, out, errOut := f.kanade("agent", "publish", bins.foreign, "--version", "1.2.4", "-o", "json")
		if code != 0 {
			t.Fatalf("publish = %d %s %s", code, out, errOut)
		}
		var view publishView
		if err := json.Unmarshal([]byte(out), &view); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, out)
		}
		sum, size := fileSum(t, bins.foreign)
		want := publishView{Object: release.ObjectName("1.2.4", bins.foreignOS, bins.foreignArc), Version: "1.2.4", OS: bins.foreignOS, Arch: bins.foreignArc,
			Size: size, SHA256: sum, KeyID: keyID, Signed: true, PublishedAt: view.PublishedAt}
		if view != want || view.PublishedAt.IsZero() {
			t.Errorf("json = %+v\nwant %+v", view, want)
		}
		if _, _, err := f.storedRelease(want.Object, ring); err != nil {
			t.Errorf("record does not verify: %v", err)
		}
		if errOut != "" {
			t.Errorf("stderr with -o json: %q", errOut)
		}
	})

	t.Run("publish changes no configuration", func(t *testing.T) {
		if seq := f.configSeq(); seq != seq0 {
			t.Errorf("agent_config stream moved from %d to %d", seq0, seq)
		}
		l, err := f.configKV().ListKeys(f.ctx())
		if err != nil {
			t.Fatal(err)
		}
		for k := range l.Keys() {
			t.Errorf("agent_config has key %s", k)
		}
	})

	t.Run("releases lists both platforms", func(t *testing.T) {
		code, out, errOut := f.kanade("agent", "releases")
		if code != 0 {
			t.Fatalf("releases = %d %s %s", code, out, errOut)
		}
		nativeSum, _ := fileSum(t, bins.native)
		foreignSum, _ := fileSum(t, bins.foreign)
		rows := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
			fs := strings.Fields(line)
			rows[fs[0]+" "+fs[1]] = line
		}
		want := map[string][]string{
			"1.2.3 " + nativePlat:  {nativeSum[:12], keyID},
			"1.2.3 " + foreignPlat: {foreignSum[:12], "UNSIGNED"},
			"1.2.4 " + foreignPlat: {foreignSum[:12], keyID},
		}
		if len(rows) != len(want) {
			t.Errorf("rows = %v, want %d", rows, len(want))
		}
		for k, subs := range want {
			relContains(t, "row "+k, rows[k], subs...)
		}
		relContains(t, "header", out, "VERSION", "PLATFORM", "SIZE", "SHA256", "SIGNED", "PUBLISHED")
	})
}

// TestAgentReleases lists signed, unsigned and broken objects, as text and
// JSON.
func TestAgentReleases(t *testing.T) {
	f := newRelFleet(t)
	code, out, _ := f.kanade("agent", "releases")
	if code != 0 || !strings.Contains(out, "no release published") {
		t.Errorf("empty store = %d %q", code, out)
	}
	keyFile, _ := generateKey(t, f)
	key, err := signing.LoadPrivate(keyFile, signing.PurposeRelease)
	if err != nil {
		t.Fatal(err)
	}
	keyID := signing.KeyID(key.Public().(ed25519.PublicKey))
	signed := f.seed("2.0.0", "linux", "amd64", key)
	f.seed("2.0.0", "windows", "amd64", nil)
	// A record that names another object, and an object with no record:
	// agents refuse both whatever their keys.
	good := f.obs()
	info, err := good.GetInfo(f.ctx(), "2.0.0/linux-amd64")
	if err != nil {
		t.Fatal(err)
	}
	data, err := good.GetBytes(f.ctx(), "2.0.0/linux-amd64")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := good.Put(f.ctx(), jetstream.ObjectMeta{Name: "2.0.1/linux-amd64", Metadata: info.Metadata}, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if _, err := good.PutBytes(f.ctx(), "2.0.1/windows-amd64", []byte("no record")); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := f.kanade("agent", "releases")
	if code != 0 {
		t.Fatalf("releases = %d %s %s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []*regexp.Regexp{
		regexp.MustCompile(`^VERSION\s+PLATFORM\s+SIZE\s+SHA256\s+SIGNED\s+PUBLISHED$`),
		regexp.MustCompile(`^2\.0\.0\s+linux-amd64\s+\d+ B\s+` + signed.SHA256[:12] + `\s+` + keyID + `\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$`),
		regexp.MustCompile(`^2\.0\.0\s+windows-amd64\s+\d+ B\s+[0-9a-f]{12}\s+UNSIGNED\s+\d{4}-`),
		regexp.MustCompile(`^2\.0\.1\s+linux-amd64\s+.*invalid record: release record names 2\.0\.0/linux-amd64 but the object is 2\.0\.1/linux-amd64`),
		regexp.MustCompile(`^2\.0\.1\s+windows-amd64\s+9 B\s+-\s+invalid record: object has no release record\s+-$`),
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, re := range want {
		if !re.MatchString(lines[i]) {
			t.Errorf("line %d = %q, want %s", i, lines[i], re)
		}
	}

	code, out, _ = f.kanade("agent", "releases", "-o", "json")
	var rows []releaseRow
	if code != 0 || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 4 {
		t.Fatalf("releases -o json = %d %s", code, out)
	}
	if r := rows[0]; r.Version != "2.0.0" || r.OS != "linux" || !r.Signed || r.KeyID != keyID || r.SHA256 != signed.SHA256 || r.Size != uint64(signed.Size) || r.Problem != "" {
		t.Errorf("signed row = %+v", r)
	}
	if r := rows[1]; r.Signed || r.KeyID != "" || r.Problem != "" {
		t.Errorf("unsigned row = %+v", r)
	}
	if rows[2].Problem == "" || rows[3].Problem == "" {
		t.Errorf("broken rows without a problem: %+v %+v", rows[2], rows[3])
	}
}

// TestAgentRollout sets, changes and clears target_version at each scope
// against published releases, and checks exactly what KV holds.
func TestAgentRollout(t *testing.T) {
	f := newRelFleet(t)
	keyFile, _ := generateKey(t, f)
	key, err := signing.LoadPrivate(keyFile, signing.PurposeRelease)
	if err != nil {
		t.Fatal(err)
	}
	f.seed("1.0.0", "linux", "amd64", key)
	f.seed("1.0.0", "windows", "amd64", key)
	f.seed("1.1.0", "linux", "amd64", key) // no windows build
	f.seed("1.2.0", "windows", "amd64", nil)
	// 3.0.0 exists only as an object whose record names another release:
	// agents refuse it, so it does not count as published.
	info, err := f.obs().GetInfo(f.ctx(), "1.0.0/linux-amd64")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.obs().Put(f.ctx(), jetstream.ObjectMeta{Name: "3.0.0/linux-amd64", Metadata: info.Metadata}, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}

	scopes := []struct {
		name string
		flag []string // of rollout
		cfg  []string // of config set
		key  string
	}{
		{"pc", []string{"--pc", "pc-1"}, []string{"--pc", "pc-1"}, "pcs.pc-1"},
		{"group", []string{"--group", "canary"}, []string{"--group", "canary"}, "groups.canary"},
		{"global", []string{"--global"}, nil, "global"},
	}
	// Fields set earlier must survive every rollout write.
	for _, sc := range scopes {
		if code, out, errOut := f.kanade(append([]string{"config", "set", "heartbeat_interval=1m"}, sc.cfg...)...); code != 0 {
			t.Fatalf("config set = %d %s %s", code, out, errOut)
		}
		if v, _ := f.config(sc.key); !relJSONEqual(t, v, `{"heartbeat_interval":"1m"}`) {
			t.Fatalf("setup: %s = %s", sc.key, v)
		}
	}

	t.Run("refusals write nothing", func(t *testing.T) {
		tests := []struct {
			name    string
			args    []string
			code    int
			wantErr []string
		}{
			{"unknown version", []string{"9.9.9", "--global"}, exitFailure, []string{"version 9.9.9 has no usable release", "published versions:", "1.0.0 (linux-amd64, windows-amd64)", "1.1.0 (linux-amd64)", "1.2.0 (windows-amd64)"}},
			{"only an invalid release", []string{"3.0.0", "--pc", "pc-1"}, exitFailure, []string{"version 3.0.0 has no usable release", "3.0.0/linux-amd64: invalid record: release record names 1.0.0/linux-amd64"}},
			{"bad version", []string{"1.0/0", "--global"}, exitUsage, []string{"may contain only"}},
			{"no version", []string{"--global"}, exitUsage, []string{"which version?"}},
			{"no scope", []string{"1.0.0"}, exitUsage, []string{"choose exactly one scope"}},
			{"two scopes", []string{"1.0.0", "--global", "--pc", "pc-1"}, exitUsage, []string{"choose exactly one scope"}},
			{"--global=false", []string{"1.0.0", "--global=false"}, exitUsage, []string{"choose exactly one scope"}},
			{"bad pc", []string{"1.0.0", "--pc", "a.b"}, exitUsage, []string{"may contain only"}},
			{"jitter not a duration", []string{"1.0.0", "--global", "--jitter", "soon"}, exitUsage, []string{"--jitter", "target_version_jitter"}},
			{"jitter too long", []string{"1.0.0", "--global", "--jitter", "30d"}, exitUsage, []string{"--jitter", "at most"}},
			{"clear with a version", []string{"1.0.0", "--clear", "--global"}, exitUsage, []string{"--clear takes no version"}},
			{"clear with a jitter", []string{"--clear", "--global", "--jitter", "1m"}, exitUsage, []string{"--clear takes no version and no --jitter"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				seq := f.configSeq()
				code, out, errOut := f.kanade(append([]string{"agent", "rollout"}, tt.args...)...)
				if code != tt.code {
					t.Errorf("exit %d, want %d: %s %s", code, tt.code, out, errOut)
				}
				relContains(t, "stderr", errOut, tt.wantErr...)
				if after := f.configSeq(); after != seq {
					t.Errorf("agent_config written (sequence %d → %d)", seq, after)
				}
			})
		}
	})

	for _, sc := range scopes {
		t.Run("set at "+sc.name, func(t *testing.T) {
			_, rev0 := f.config(sc.key)
			code, out, errOut := f.kanade(append([]string{"agent", "rollout", "1.0.0"}, sc.flag...)...)
			val, rev := f.config(sc.key)
			if code != 0 || rev <= rev0 {
				t.Fatalf("rollout = %d %s %s; revision %d → %d", code, out, errOut, rev0, rev)
			}
			if !relJSONEqual(t, val, `{"heartbeat_interval":"1m","target_version":"1.0.0"}`) {
				t.Errorf("stored %s", val)
			}
			relContains(t, "stdout", out, "agent_config/"+sc.key, `target_version: (unset) → "1.0.0"`,
				fmt.Sprintf("written: revision %d (was revision %d)", rev, rev0), "within seconds", "random delay")
			if errOut != "" {
				t.Errorf("stderr: %s", errOut)
			}
		})
	}

	t.Run("same target again writes nothing", func(t *testing.T) {
		_, rev0 := f.config("pcs.pc-1")
		code, out, _ := f.kanade("agent", "rollout", "1.0.0", "--pc", "pc-1")
		if _, rev := f.config("pcs.pc-1"); code != 0 || rev != rev0 {
			t.Errorf("= %d, revision %d → %d", code, rev0, rev)
		}
		relContains(t, "stdout", out, `"1.0.0" (unchanged)`, fmt.Sprintf("nothing written (still revision %d)", rev0))
	})

	t.Run("change with jitter and a missing platform", func(t *testing.T) {
		_, rev0 := f.config("groups.canary")
		code, out, errOut := f.kanade("agent", "rollout", "1.1.0", "--group", "canary", "--jitter", "2m")
		val, rev := f.config("groups.canary")
		if code != 0 || rev <= rev0 || !relJSONEqual(t, val, `{"heartbeat_interval":"1m","target_version":"1.1.0","target_version_jitter":"2m"}`) {
			t.Fatalf("= %d %s %s; stored %s rev %d → %d", code, out, errOut, val, rev0, rev)
		}
		relContains(t, "stdout", out, `target_version: "1.0.0" → "1.1.0"`, `target_version_jitter: (unset) → "2m"`, `up to the jitter 2m set in this layer`,
			fmt.Sprintf("written: revision %d (was revision %d)", rev, rev0))
		relContains(t, "stderr", errOut, "warning: 1.1.0 has no usable windows-amd64 release")
	})

	t.Run("unsigned release and more specific layers are pointed out", func(t *testing.T) {
		code, out, errOut := f.kanade("agent", "rollout", "1.2.0", "--global")
		if v, _ := f.config("global"); code != 0 || !relJSONEqual(t, v, `{"heartbeat_interval":"1m","target_version":"1.2.0"}`) {
			t.Fatalf("= %d %s %s; stored %s", code, out, errOut, v)
		}
		relContains(t, "stderr", errOut, "1.2.0 for windows-amd64 is UNSIGNED", "1.2.0 has no usable linux-amd64 release")
		relContains(t, "stdout", out, `target_version: "1.0.0" → "1.2.0"`, "group canary → 1.1.0", "pc pc-1 → 1.0.0")
	})

	t.Run("a concurrent change wins: compare-and-set", func(t *testing.T) {
		tests := []struct {
			name string
			args []string
			key  string
		}{
			{"set", []string{"1.0.0", "--group", "racing"}, "groups.racing"},
			{"set over an existing layer", []string{"1.1.0", "--pc", "pc-1"}, "pcs.pc-1"},
			{"clear", []string{"--clear", "--pc", "pc-1"}, "pcs.pc-1"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if tt.name == "clear" {
					if code, out, errOut := f.kanade("agent", "rollout", "1.1.0", "--pc", "pc-1"); code != 0 {
						t.Fatalf("rollout = %d %s %s", code, out, errOut)
					}
				}
				other := `{"heartbeat_interval":"5m","target_version":"1.1.0"}`
				var otherRev uint64
				rolloutReadHook = func(key string) {
					if key != tt.key {
						t.Errorf("hook for %s, want %s", key, tt.key)
					}
					var err error
					if otherRev, err = f.configKV().Put(context.Background(), key, []byte(other)); err != nil {
						t.Error(err)
					}
				}
				defer func() { rolloutReadHook = nil }()
				code, out, errOut := f.kanade(append([]string{"agent", "rollout"}, tt.args...)...)
				if code != exitFailure {
					t.Errorf("exit %d, want %d: %s %s", code, exitFailure, out, errOut)
				}
				relContains(t, "stderr", errOut, "agent_config/"+tt.key+" was changed by someone else since it was read", "nothing written")
				if val, rev := f.config(tt.key); rev != otherRev || val != other {
					t.Errorf("stored %s (revision %d), want the concurrent write %s (revision %d)", val, rev, other, otherRev)
				}
			})
		}
		// Put the layers back as the following steps expect them.
		if _, err := f.configKV().Put(f.ctx(), "pcs.pc-1", []byte(`{"heartbeat_interval":"1m","target_version":"1.0.0"}`)); err != nil {
			t.Fatal(err)
		}
		if err := f.configKV().Delete(f.ctx(), "groups.racing"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("current shows each scope", func(t *testing.T) {
		_, gRev := f.config("global")
		_, cRev := f.config("groups.canary")
		_, pRev := f.config("pcs.pc-1")
		if code, _, errOut := f.kanade("config", "set", "--group", "finance", "inventory_enabled=false"); code != 0 { // a layer without a target
			t.Fatalf("config set = %d %s", code, errOut)
		}
		code, out, errOut := f.kanade("agent", "current")
		if code != 0 {
			t.Fatalf("current = %d %s %s", code, out, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		want := []string{
			`^SCOPE\s+TARGET\s+JITTER\s+REVISION$`,
			fmt.Sprintf(`^global\s+1\.2\.0\s+-\s+%d$`, gRev),
			fmt.Sprintf(`^group canary\s+1\.1\.0\s+2m\s+%d$`, cRev),
			fmt.Sprintf(`^pc pc-1\s+1\.0\.0\s+-\s+%d$`, pRev),
		}
		if len(lines) < len(want) {
			t.Fatalf("current:\n%s", out)
		}
		for i, re := range want {
			if !regexp.MustCompile(re).MatchString(lines[i]) {
				t.Errorf("line %d = %q, want %s", i, lines[i], re)
			}
		}
		if strings.Contains(out, "finance") {
			t.Errorf("a layer without target_version is listed:\n%s", out)
		}
		code, out, _ = f.kanade("agent", "current", "-o", "json")
		var rows []targetRow
		if code != 0 || json.Unmarshal([]byte(out), &rows) != nil {
			t.Fatalf("current -o json = %d %s", code, out)
		}
		wantRows := []targetRow{
			{Scope: "global", Key: "global", Target: "1.2.0", Revision: gRev},
			{Scope: "group canary", Key: "groups.canary", Target: "1.1.0", Jitter: "2m", Revision: cRev},
			{Scope: "pc pc-1", Key: "pcs.pc-1", Target: "1.0.0", Revision: pRev},
		}
		if !slices.Equal(rows, wantRows) {
			t.Errorf("json = %+v\nwant %+v", rows, wantRows)
		}
	})

	t.Run("clear removes the fields", func(t *testing.T) {
		for _, sc := range scopes {
			_, rev0 := f.config(sc.key)
			code, out, errOut := f.kanade(append([]string{"agent", "rollout", "--clear"}, sc.flag...)...)
			val, rev := f.config(sc.key)
			if code != 0 || rev <= rev0 || !relJSONEqual(t, val, `{"heartbeat_interval":"1m"}`) {
				t.Errorf("%s: clear = %d %s %s; stored %s rev %d → %d", sc.name, code, out, errOut, val, rev0, rev)
			}
			relContains(t, sc.name+" stdout", out, "target_version: ", "→ (unset)", fmt.Sprintf("written: revision %d (was revision %d)", rev, rev0))
			// Clearing again writes nothing.
			code, out, _ = f.kanade(append([]string{"agent", "rollout", "--clear"}, sc.flag...)...)
			if _, rev2 := f.config(sc.key); code != 0 || rev2 != rev || !strings.Contains(out, "sets no target_version; nothing written") {
				t.Errorf("%s: second clear = %d %q; revision %d → %d", sc.name, code, out, rev, rev2)
			}
		}
		if v, _ := f.config("groups.canary"); strings.Contains(v, "jitter") {
			t.Errorf("jitter left behind: %s", v)
		}
		code, out, _ := f.kanade("agent", "current")
		if code != 0 || !strings.Contains(out, "no target_version set anywhere") {
			t.Errorf("current after clearing = %d %q", code, out)
		}
	})
}

// TestAgentCurrentProblems shows layers whose target agents cannot use.
func TestAgentCurrentProblems(t *testing.T) {
	f := newRelFleet(t)
	kv := f.configKV()
	for k, v := range map[string]string{
		"pcs.pc-7":      `{"target_version": 7}`,
		"groups.broken": `{"target_version": "1.0.0",`,
		"groups.ok":     `{"target_version": "1.0.0", "target_version_jitter": "5m"}`,
	} {
		if _, err := kv.Put(f.ctx(), k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := f.kanade("agent", "current")
	if code != 0 {
		t.Fatalf("current = %d %s %s", code, out, errOut)
	}
	relContains(t, "stdout", out, "group broken", "group ok", "pc pc-7",
		"problem: agent_config/groups.broken: layer group broken is not a JSON object",
		"problem: agent_config/pcs.pc-7: target_version must be a version string; agents ignore it")
	if !regexp.MustCompile(`(?m)^group ok\s+1\.0\.0\s+5m\s+\d+$`).MatchString(out) {
		t.Errorf("group ok row missing:\n%s", out)
	}
}
