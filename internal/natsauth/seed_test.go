package natsauth_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/natsauth"
)

func TestSeedFiles(t *testing.T) {
	seed, pub, err := natsauth.NewUser()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := natsauth.ParseSeed(seed); err != nil || got != pub {
		t.Fatalf("ParseSeed = %q, %v; want %q", got, err, pub)
	}
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		path string
		err  string // empty: reads seed
		unix bool   // the check exists on Unix only
	}{
		{name: "a seed with a trailing newline", path: write("ok.nk", string(seed)+"\n", 0o600)},
		{name: "missing", path: filepath.Join(dir, "missing.nk"), err: "does not exist"},
		{name: "readable by others", path: write("open.nk", string(seed), 0o644), err: "readable by group or others (mode -rw-r--r--): chmod 600 it", unix: true},
		{name: "empty", path: write("empty.nk", "\n", 0o600), err: "the NKey seed is empty"},
		{name: "a public key instead", path: write("pub.nk", pub, 0o600), err: `not an NKey user seed: expected the text of a seed starting with "SU"`},
		{name: "a damaged seed", path: write("bad.nk", string(seed[:len(seed)-3])+"AAA", 0o600), err: "invalid NKey user seed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.unix && runtime.GOOS == "windows" {
				t.Skip("file modes are not checked on Windows")
			}
			got, err := natsauth.ReadSeedFile(tt.path)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.err)
				}
				if strings.Contains(err.Error(), string(seed)) {
					t.Fatalf("the error shows the seed: %v", err)
				}
				return
			}
			if err != nil || string(got) != string(seed) {
				t.Fatalf("ReadSeedFile = %q, %v", got, err)
			}
		})
	}
}

func TestLoadOrCreateSeedKeepsTheKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "backend.nk")
	seed, pub, created, err := natsauth.LoadOrCreateSeed(path)
	if err != nil || !created {
		t.Fatalf("first call: created %v, %v", created, err)
	}
	if st, err := os.Stat(path); err != nil || (runtime.GOOS != "windows" && st.Mode().Perm() != 0o600) {
		t.Fatalf("seed file: %v, mode %v; want 0600", err, st.Mode().Perm())
	}
	seed2, pub2, created, err := natsauth.LoadOrCreateSeed(path)
	if err != nil || created || pub2 != pub || string(seed2) != string(seed) {
		t.Fatalf("second call: created %v, same key %v, %v", created, pub2 == pub, err)
	}
}

func TestRegistry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nkeys", "agents.json")
	r, err := natsauth.OpenRegistry(path)
	if err != nil || len(r.List()) != 0 {
		t.Fatalf("a missing file is an empty registry: %v %v", r.List(), err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	seedA, a, replaced, err := r.Enroll("pc-a", now)
	if err != nil || replaced {
		t.Fatal(err, replaced)
	}
	if pub, _ := natsauth.ParseSeed(seedA); pub != a.PublicKey {
		t.Fatalf("the seed's public key %s is not the enrolled %s", pub, a.PublicKey)
	}
	if _, _, _, err := r.Enroll("pc-b", now); err != nil {
		t.Fatal(err)
	}
	_, a2, replaced, err := r.Enroll("pc-a", now.Add(time.Hour))
	if err != nil || !replaced || a2.PublicKey == a.PublicKey {
		t.Fatalf("re-enrolment: replaced %v, new key %v, %v", replaced, a2.PublicKey != a.PublicKey, err)
	}
	if _, _, _, err := r.Enroll("pc.bad", now); err == nil || !strings.Contains(err.Error(), "not usable in a NATS subject") {
		t.Fatalf("bad pc: %v", err)
	}
	if _, ok, err := r.Revoke("pc-b"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if _, ok, err := r.Revoke("pc-b"); ok || err != nil {
		t.Fatalf("second revoke: %v %v", ok, err)
	}

	// The file is the source of truth: a reopened registry has the same.
	r2, err := natsauth.OpenRegistry(path)
	if err != nil {
		t.Fatal(err)
	}
	if l := r2.List(); len(l) != 1 || l[0] != a2 {
		t.Fatalf("reopened = %+v, want only %+v", l, a2)
	}
	if u := r2.Users(); len(u) != 1 || u[0].Role != natsauth.RoleAgent || u[0].PC != "pc-a" || u[0].PublicKey != a2.PublicKey {
		t.Fatalf("users = %+v", u)
	}
	if err := r2.Put(natsauth.Enrollment{PC: "pc-c", PublicKey: a2.PublicKey}); err == nil || !strings.Contains(err.Error(), "already enrolled for pc-a") {
		t.Fatalf("Put of a key enrolled elsewhere: %v", err)
	}
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), string(seedA)) || strings.Contains(string(b), `"SU`) {
		t.Fatalf("the registry holds a seed:\n%s", b)
	}

	for _, tc := range []struct{ name, content, err string }{
		{"not JSON", "{", "is not valid"},
		{"a bad key", `{"version":1,"agents":[{"pc_id":"pc-a","public_key":"UNOPE","enrolled_at":"2026-01-01T00:00:00Z"}]}`, "not an NKey public user key"},
		{"a shared key", `{"version":1,"agents":[{"pc_id":"pc-a","public_key":"` + a2.PublicKey + `"},{"pc_id":"pc-b","public_key":"` + a2.PublicKey + `"}]}`, "share the public key"},
		{"an unknown field", `{"version":1,"agentz":[]}`, "is not valid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "agents.json")
			if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := natsauth.OpenRegistry(p); err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want %q (never an empty registry: that would lock every agent out)", err, tc.err)
			}
		})
	}
}

func TestUserCheck(t *testing.T) {
	_, pub, err := natsauth.NewUser()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		u   natsauth.User
		err string
	}{
		{natsauth.User{Role: natsauth.RoleAgent, PC: "pc-a", PublicKey: pub}, ""},
		{natsauth.User{Role: natsauth.RoleBackend, PublicKey: pub}, ""},
		{natsauth.User{Role: natsauth.RoleAgent, PublicKey: pub}, "agent pc_id is empty"},
		{natsauth.User{Role: natsauth.RoleAgent, PC: "a>b", PublicKey: pub}, "not usable in a NATS subject"},
		{natsauth.User{Role: natsauth.RoleOperator, PC: "pc-a", PublicKey: pub}, "the operator role has no pc_id"},
		{natsauth.User{Role: "admin", PublicKey: pub}, `unknown role "admin"`},
		{natsauth.User{Role: natsauth.RoleBackend, PublicKey: "SUXYZ"}, "not an NKey public user key"},
	} {
		err := tc.u.Check()
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%+v: err = %v, want %q", tc.u, err, tc.err)
		}
	}
}
