package cmdsign

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-project/kanade/internal/signing"
	"github.com/kanade-project/kanade/internal/winetest"
)

// t0 is the signing instant of the fixed test vectors; verification
// happens at now.
var (
	t0  = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	now = t0.Add(time.Hour)
)

// testKey is deterministic so the committed fuzz corpus stays valid.
func testKey(seed byte) ed25519.PrivateKey {
	s := make([]byte, ed25519.SeedSize)
	for i := range s {
		s[i] = seed
	}
	return ed25519.NewKeyFromSeed(s)
}

func ringOf(t testing.TB, keys ...ed25519.PrivateKey) *signing.Ring {
	t.Helper()
	var text string
	for _, k := range keys {
		text += signing.PublicLine(signing.PurposeCommand, k.Public().(ed25519.PublicKey))
	}
	r, err := signing.ParseRing([]byte(text), signing.PurposeCommand)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func signerAt(key ed25519.PrivateKey, at time.Time) *Signer {
	s := NewSigner(key)
	s.Now = func() time.Time { return at }
	return s
}

const body = `{"id":"adhoc-run","request_id":"r1","exec_id":"r1","script":"echo hi"}`

func TestVerify(t *testing.T) {
	key, other := testKey(1), testKey(2)
	ring := ringOf(t, key)
	sign := func(s *Signer, target string, expires time.Time) nats.Header {
		t.Helper()
		h, err := s.Sign(target, []byte(body), expires)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	good := func() nats.Header { return sign(signerAt(key, t0), "pc:pc-1", t0.Add(24*time.Hour)) }
	with := func(name, value string) nats.Header {
		h := good()
		h.Set(name, value)
		return h
	}
	without := func(names ...string) nats.Header {
		h := good()
		for _, n := range names {
			h.Del(n)
		}
		return h
	}
	// resign re-signs the message after changing one envelope field, so
	// the signature is valid and only the field's own check can refuse.
	resign := func(e Envelope) nats.Header {
		msg, err := Message(e, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		h := nats.Header{}
		h.Set(HeaderAlg, e.Alg)
		h.Set(HeaderKey, e.KeyID)
		h.Set(HeaderTime, e.Time.Format(TimeFormat))
		h.Set(HeaderTarget, e.Target)
		h.Set(HeaderExpires, e.Expires.Format(TimeFormat))
		h.Set(HeaderSig, base64.StdEncoding.EncodeToString(ed25519.Sign(key, msg)))
		return h
	}
	env := Envelope{Alg: Alg, KeyID: signing.KeyID(key.Public().(ed25519.PublicKey)), Time: t0, Target: "pc:pc-1", Expires: t0.Add(time.Hour)}
	tampered := []byte(body)
	tampered[len(tampered)-4] ^= 1

	for _, tc := range []struct {
		name    string
		subject string
		h       nats.Header
		body    []byte
		now     time.Time
		want    error
		msg     []string // substrings of the error
	}{
		{name: "valid", h: good()},
		{name: "valid group", subject: "commands.group.canary", h: sign(signerAt(key, t0), "group:canary", t0.Add(time.Hour))},
		{name: "valid all", subject: "commands.all", h: sign(signerAt(key, t0), "all", t0.Add(time.Hour))},
		{name: "valid at the skew limit", h: good(), now: t0.Add(-MaxClockSkew)},
		{name: "valid at the expiry", h: good(), now: t0.Add(24 * time.Hour)},
		{name: "no headers", h: nil, want: ErrUnsigned},
		{name: "signature stripped", h: without(HeaderSig), want: ErrUnsigned, msg: []string{"Kanade-Sig header is missing"}},
		{name: "all headers stripped", h: without(HeaderAlg, HeaderKey, HeaderTime, HeaderTarget, HeaderExpires, HeaderSig), want: ErrUnsigned},
		{name: "one body byte changed", h: good(), body: tampered, want: ErrBadSig},
		{name: "signed target changed", h: with(HeaderTarget, "pc:pc-2"), subject: "commands.pc.pc-2", want: ErrBadSig},
		{name: "expiry extended", h: with(HeaderExpires, t0.Add(48*time.Hour).Format(TimeFormat)), want: ErrBadSig},
		{name: "signature of another key under a trusted id", h: with(HeaderSig, sign(signerAt(other, t0), "pc:pc-1", t0.Add(time.Hour)).Get(HeaderSig)), want: ErrBadSig},
		{name: "unknown key", h: sign(signerAt(other, t0), "pc:pc-1", t0.Add(time.Hour)), want: ErrUnknownKey,
			msg: []string{signing.KeyID(other.Public().(ed25519.PublicKey)), "trusts " + env.KeyID}},
		{name: "re-targeted to another PC", h: sign(signerAt(key, t0), "pc:pc-A", t0.Add(time.Hour)), want: ErrTarget,
			msg: []string{"signed for pc:pc-A but received on commands.pc.pc-1"}},
		{name: "group command re-published to a PC", h: sign(signerAt(key, t0), "group:canary", t0.Add(time.Hour)), want: ErrTarget},
		{name: "PC command re-published to all", subject: "commands.all", h: good(), want: ErrTarget},
		{name: "not a command subject", subject: "commands.pc", h: good(), want: ErrTarget},
		{name: "expired", h: good(), now: t0.Add(24*time.Hour + time.Second), want: ErrExpired, msg: []string{"expired at 2025-06-02T12:00:00Z"}},
		{name: "signed in the future", h: good(), now: t0.Add(-MaxClockSkew - time.Second), want: ErrFuture, msg: []string{"clocks"}},
		{name: "validity over 7 days", h: resign(Envelope{Alg: Alg, KeyID: env.KeyID, Time: t0, Target: "pc:pc-1", Expires: t0.Add(MaxLifetime + time.Second)}), want: ErrLifetime},
		{name: "expiry before signing", h: resign(Envelope{Alg: Alg, KeyID: env.KeyID, Time: t0, Target: "pc:pc-1", Expires: t0.Add(-time.Second)}), want: ErrLifetime},
		{name: "other algorithm", h: with(HeaderAlg, "rsa"), want: ErrMalformed, msg: []string{"only ed25519"}},
		{name: "key id not hex", h: with(HeaderKey, "ZZZZZZZZZZZZZZZZ"), want: ErrMalformed},
		{name: "upper-case key id", h: with(HeaderKey, strings.ToUpper(env.KeyID)), want: ErrMalformed},
		{name: "time with an offset", h: with(HeaderTime, "2025-06-01T21:00:00+09:00"), want: ErrMalformed},
		{name: "time with fractions", h: with(HeaderTime, "2025-06-01T12:00:00.5Z"), want: ErrMalformed},
		{name: "unix time", h: with(HeaderExpires, "1748779200"), want: ErrMalformed},
		{name: "newline in the target", h: with(HeaderTarget, "pc:pc-1\n2025-06-09T12:00:00Z"), want: ErrMalformed},
		{name: "target with a dot", h: with(HeaderTarget, "pc:a.b"), want: ErrMalformed},
		{name: "signature not base64", h: with(HeaderSig, "!!"), want: ErrMalformed},
		{name: "signature truncated", h: with(HeaderSig, base64.StdEncoding.EncodeToString(make([]byte, 63))), want: ErrMalformed},
		{name: "header twice", h: func() nats.Header { h := good(); h.Add(HeaderTarget, "all"); return h }(), want: ErrMalformed, msg: []string{"appears 2 times"}},
		{name: "empty header", h: with(HeaderKey, ""), want: ErrMalformed},
		{name: "header missing", h: without(HeaderExpires), want: ErrMalformed, msg: []string{"Kanade-Sig-Expires header is missing"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			subject := tc.subject
			if subject == "" {
				subject = "commands.pc.pc-1"
			}
			b := tc.body
			if b == nil {
				b = []byte(body)
			}
			at := tc.now
			if at.IsZero() {
				at = now
			}
			_, err := Verify(ring, subject, tc.h, b, at)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify = %v, want success", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
			if Reason(err) == "error" || Reason(err) == "ok" {
				t.Errorf("Reason(%v) = %q, want a specific reason", err, Reason(err))
			}
			for _, m := range tc.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q lacks %q", err, m)
				}
			}
		})
	}

	var empty *signing.Ring
	if _, err := Verify(empty, "commands.pc.pc-1", good(), []byte(body), now); !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), "no command key") {
		t.Errorf("Verify with no ring = %v, want ErrUnknownKey naming no trusted key", err)
	}
}

func TestMessageIsInjective(t *testing.T) {
	e := Envelope{Alg: Alg, KeyID: "0123456789abcdef", Time: t0, Target: "all", Expires: t0.Add(time.Hour)}
	a, err := Message(e, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	want := "kanade-command-sig-v1\ned25519\n0123456789abcdef\n2025-06-01T12:00:00Z\nall\n2025-06-01T13:00:00Z\nx"
	if string(a) != want {
		t.Fatalf("Message =\n%q\nwant\n%q", a, want)
	}
	e.Target = "pc:x"
	if b, _ := Message(e, nil); string(b) == string(a) {
		t.Fatal("two envelopes encode alike")
	}
}

func TestSignCommandExpiry(t *testing.T) {
	s := signerAt(testKey(1), t0)
	soon := t0.Add(10 * time.Minute)
	late := t0.Add(30 * 24 * time.Hour)
	past := t0.Add(-48 * time.Hour)
	for _, tc := range []struct {
		name     string
		deadline *time.Time
		want     time.Time
	}{
		{"no deadline: the EXEC window", nil, t0.Add(MaxLifetime)},
		{"a near deadline plus the grace", &soon, soon.Add(deadlineGrace)},
		{"a deadline beyond 7 days is capped", &late, t0.Add(MaxLifetime)},
		{"a past deadline still gets its 125", &past, t0.Add(deadlineGrace)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := s.SignCommand("commands.group.g", []byte(body), tc.deadline)
			if err != nil {
				t.Fatal(err)
			}
			if got := h.Get(HeaderExpires); got != tc.want.Format(TimeFormat) {
				t.Errorf("expires %s, want %s", got, tc.want.Format(TimeFormat))
			}
			if h.Get(HeaderTarget) != "group:g" || h.Get(HeaderTime) != t0.Format(TimeFormat) {
				t.Errorf("headers %v", h)
			}
			if _, err := Verify(ringOf(t, testKey(1)), "commands.group.g", h, []byte(body), t0); err != nil {
				t.Errorf("a fresh signature does not verify: %v", err)
			}
		})
	}
	if _, err := s.SignCommand("results.x", []byte(body), nil); err == nil {
		t.Error("signed a command for a non-command subject")
	}
	if _, err := s.Sign("all", []byte(body), t0.Add(MaxLifetime+time.Second)); !errors.Is(err, ErrLifetime) {
		t.Errorf("Sign beyond 7 days = %v, want ErrLifetime", err)
	}
}

func TestTargetOfSubject(t *testing.T) {
	for subject, want := range map[string]string{
		"commands.all":          "all",
		"commands.pc.PC-東京":     "pc:PC-東京",
		"commands.group.canary": "group:canary",
		"commands.pc.a.b":       "",
		"commands.pc.":          "",
		"commands.group.*":      "",
		"commands.allx":         "",
		"heartbeat.pc-1":        "",
	} {
		got, err := TargetOfSubject(subject)
		if got != want || (err == nil) != (want != "") {
			t.Errorf("TargetOfSubject(%q) = %q, %v; want %q", subject, got, err, want)
		}
	}
}

func TestLoadSigner(t *testing.T) {
	dir := winetest.TempDir(t)
	id, err := signing.Generate(dir, signing.PurposeCommand)
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, "command.key")
	s, err := LoadSigner(keyPath)
	if err != nil || s.KeyID() != id {
		t.Fatalf("LoadSigner = %v, %v; want key %s", s, err, id)
	}
	seed, _ := os.ReadFile(keyPath)
	releaseDir := winetest.TempDir(t)
	if _, err := signing.Generate(releaseDir, signing.PurposeRelease); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want string
		mode             os.FileMode
		unixOnly         bool
	}{
		{name: "missing", path: filepath.Join(dir, "nope.key"), want: "does not exist"},
		{name: "a release key", path: filepath.Join(releaseDir, "release.key"), want: "not a command private key"},
		{name: "the public key", path: filepath.Join(dir, "command.pub"), want: "not a command private key"},
		{name: "group readable", path: keyPath, mode: 0o640, want: "chmod 600", unixOnly: true},
		{name: "world readable", path: keyPath, mode: 0o604, want: "mode -rw----r--", unixOnly: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.unixOnly && runtime.GOOS == "windows" {
				t.Skip("no mode bits on Windows")
			}
			if tc.mode != 0 {
				if err := os.Chmod(tc.path, tc.mode); err != nil {
					t.Fatal(err)
				}
				defer os.Chmod(tc.path, 0o600)
			}
			_, err := LoadSigner(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadSigner = %v, want an error with %q", err, tc.want)
			}
			if f := strings.Fields(string(seed)); strings.Contains(err.Error(), f[len(f)-1]) {
				t.Fatal("the error shows key material")
			}
		})
	}
}
