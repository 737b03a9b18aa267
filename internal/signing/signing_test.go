package signing

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGenerateWritesKeyPairAndRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	id, err := Generate(dir, PurposeRelease)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "release.key"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("release.key mode %v, want 0600", st.Mode().Perm())
	}
	priv, err := LoadPrivate(filepath.Join(dir, "release.key"), PurposeRelease)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := LoadRing(filepath.Join(dir, "release.pub"), PurposeRelease)
	if err != nil {
		t.Fatal(err)
	}
	if got := ring.IDs(); len(got) != 1 || got[0] != id || KeyID(priv.Public().(ed25519.PublicKey)) != id {
		t.Fatalf("ring ids %v, generated id %s", got, id)
	}
	if _, err := Generate(dir, PurposeRelease); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("second Generate = %v, want a refusal", err)
	}
}

func TestVerify(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	otherPub, otherPriv, _ := ed25519.GenerateKey(nil)
	_ = otherPub
	ring, err := ParseRing([]byte("# fleet release keys\n\n"+PublicLine(PurposeRelease, pub)), PurposeRelease)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte(`{"version":"1.0.0"}`)
	good := ed25519.Sign(priv, msg)
	tampered := append([]byte(nil), msg...)
	tampered[2] ^= 1
	for _, tc := range []struct {
		name  string
		msg   []byte
		sig   []byte
		keyID string
		want  error
	}{
		{"valid", msg, good, KeyID(pub), nil},
		{"unsigned", msg, nil, KeyID(pub), ErrUnsigned},
		{"unknown key", msg, ed25519.Sign(otherPriv, msg), KeyID(otherPub), ErrUnknownKey},
		{"signed by another key under a trusted id", msg, ed25519.Sign(otherPriv, msg), KeyID(pub), ErrBadSig},
		{"one byte changed", tampered, good, KeyID(pub), ErrBadSig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ring.Verify(tc.msg, tc.sig, tc.keyID)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
	var nilRing *Ring
	if err := nilRing.Verify(msg, good, KeyID(pub)); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("nil ring Verify = %v, want ErrUnknownKey", err)
	}
}

func TestParseRingRejectsDamage(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(nil)
	good := PublicLine(PurposeRelease, pub)
	for _, tc := range []struct {
		name, text, want string
	}{
		{"command key in a release ring", PublicLine(PurposeCommand, pub), "line 1"},
		{"truncated key", "kanade-release-key ed25519 " + base64.StdEncoding.EncodeToString(pub[:10]) + "\n", "malformed public key"},
		{"not base64", "kanade-release-key ed25519 !!!\n", "malformed public key"},
		{"private key pasted", "kanade-release-private-key ed25519 AAAA\n", "line 1"},
		{"one bad line among good ones", good + "garbage\n", "line 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseRing([]byte(tc.text), PurposeRelease); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseRing = %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
	empty, err := ParseRing([]byte("# nothing yet\n"), PurposeRelease)
	if err != nil || empty.Len() != 0 || len(empty.IDs()) != 0 {
		t.Fatalf("empty ring: %v, %d keys", err, empty.Len())
	}
}

func TestParsePrivateNeverEchoesKeyMaterial(t *testing.T) {
	secret := "kanade-release-private-key ed25519 c2VjcmV0LW1hdGVyaWFs\n"
	_, err := ParsePrivate([]byte(secret), PurposeRelease)
	if err == nil || strings.Contains(err.Error(), "c2VjcmV0") {
		t.Fatalf("ParsePrivate error %v must not contain the key material", err)
	}
	if _, err := ParsePrivate([]byte(secret), PurposeCommand); err == nil {
		t.Fatal("a release key was accepted as a command key")
	}
}
