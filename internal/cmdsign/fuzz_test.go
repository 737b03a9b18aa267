package cmdsign

import (
	"crypto/ed25519"
	"encoding/base64"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// FuzzVerify feeds arbitrary subjects, header values and bodies to Verify.
// It must never panic, every refusal must carry a known reason, and it
// must accept only what the trusted key really signed: Ed25519 signatures
// are deterministic, so an accepted message's signature must equal the one
// the test key makes over the same envelope and body, and the envelope
// must fit the subject and the clock. An empty header value stands for an
// absent header. The committed corpus under testdata/fuzz/FuzzVerify holds
// a valid command and the refusal cases of TestVerify.
func FuzzVerify(f *testing.F) {
	key := testKey(1)
	ring := ringOf(f, key)
	s := signerAt(key, t0)
	h, err := s.Sign("pc:pc-1", []byte(body), t0.Add(24*time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	add := func(subject string, h nats.Header, b string) {
		f.Add(subject, h.Get(HeaderAlg), h.Get(HeaderKey), h.Get(HeaderTime), h.Get(HeaderTarget), h.Get(HeaderExpires), h.Get(HeaderSig), []byte(b))
	}
	add("commands.pc.pc-1", h, body)
	add("commands.pc.pc-2", h, body)
	add("commands.pc.pc-1", h, body[:len(body)-1])
	add("commands.pc.pc-1", nats.Header{}, body)
	g, _ := s.Sign("group:g", []byte("{}"), t0.Add(time.Hour))
	add("commands.group.g", g, "{}")

	f.Fuzz(func(t *testing.T, subject, alg, keyID, signedAt, target, expires, sig string, b []byte) {
		h := nats.Header{}
		for name, v := range map[string]string{HeaderAlg: alg, HeaderKey: keyID, HeaderTime: signedAt, HeaderTarget: target, HeaderExpires: expires, HeaderSig: sig} {
			if v != "" {
				h.Set(name, v)
			}
		}
		e, err := Verify(ring, subject, h, b, now)
		if err != nil {
			if Reason(err) == "error" {
				t.Fatalf("refusal without a known reason: %v", err)
			}
			return
		}
		msg, merr := Message(e, b)
		if merr != nil {
			t.Fatalf("accepted an envelope Message refuses: %v", merr)
		}
		if want := base64.StdEncoding.EncodeToString(ed25519.Sign(key, msg)); sig != want {
			t.Fatalf("accepted signature %q, but the key signs this message as %q", sig, want)
		}
		if e.Time.Format(TimeFormat) != signedAt || e.Expires.Format(TimeFormat) != expires || e.Target != target {
			t.Fatalf("the verified envelope %+v differs from the headers", e)
		}
		if got, err := TargetOfSubject(subject); err != nil || got != target {
			t.Fatalf("accepted target %q on subject %q", target, subject)
		}
		if now.After(e.Expires) || e.Time.After(now.Add(MaxClockSkew)) || e.Expires.Sub(e.Time) > MaxLifetime {
			t.Fatalf("accepted outside its validity: %+v", e)
		}
	})
}
