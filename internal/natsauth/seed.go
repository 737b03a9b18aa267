package natsauth

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/kanade-project/kanade/internal/atomicfile"
)

// A seed is the private half of an NKey user, as text ("SU…"), exactly what
// `nsc` and `nk -gen user` write. It is a secret: never printed, logged,
// put in a config file or on a command line. Files holding one must not be
// readable by group or others (on Unix; on Windows the directory's ACL
// protects it).

// EnvNKey names the file holding the CLI's (operator's) seed when --nkey is
// not given: a path, never the seed itself, which would show in process
// listings and shell histories.
const EnvNKey = "KANADE_NATS_NKEY"

// NewUser mints a user key pair and returns its seed and public key.
func NewUser() (seed []byte, publicKey string, err error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, "", fmt.Errorf("natsauth: creating a user key: %w", err)
	}
	defer kp.Wipe()
	if seed, err = kp.Seed(); err != nil {
		return nil, "", fmt.Errorf("natsauth: %w", err)
	}
	// Wipe zeroes the key pair's own copy, which Seed returns.
	seed = bytes.Clone(seed)
	if publicKey, err = kp.PublicKey(); err != nil {
		return nil, "", fmt.Errorf("natsauth: %w", err)
	}
	return seed, publicKey, nil
}

// ParseSeed checks that seed is a user seed and returns its public key.
// Surrounding whitespace is ignored (files end with a newline).
func ParseSeed(seed []byte) (publicKey string, err error) {
	seed = bytes.TrimSpace(seed)
	if len(seed) == 0 {
		return "", errors.New("natsauth: the NKey seed is empty")
	}
	if !bytes.HasPrefix(seed, []byte("SU")) {
		return "", errors.New("natsauth: not an NKey user seed: expected the text of a seed starting with \"SU\" (as written by `kanade agent enroll`)")
	}
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return "", fmt.Errorf("natsauth: invalid NKey user seed: %w", err)
	}
	defer kp.Wipe()
	return kp.PublicKey()
}

// CheckPublicKey reports whether pub is an NKey public user key (U…).
func CheckPublicKey(pub string) error {
	if !nkeys.IsValidPublicUserKey(pub) {
		return fmt.Errorf("natsauth: %q is not an NKey public user key (56 characters starting with \"U\")", pub)
	}
	return nil
}

// Option authenticates a NATS connection as the user of seed: the client
// signs the server's nonce, and only the public key travels. It returns the
// public key too, for logs.
func Option(seed []byte) (nats.Option, string, error) {
	seed = bytes.Clone(bytes.TrimSpace(seed))
	pub, err := ParseSeed(seed)
	if err != nil {
		return nil, "", err
	}
	sign := func(nonce []byte) ([]byte, error) {
		kp, err := nkeys.FromSeed(seed)
		if err != nil {
			return nil, err
		}
		defer kp.Wipe()
		return kp.Sign(nonce)
	}
	return nats.Nkey(pub, sign), pub, nil
}

// ReadSeedFile reads a seed from path, refusing a file that group or others
// can read on Unix: a seed anyone can read is anyone's identity.
func ReadSeedFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("NKey seed file %s does not exist", path)
	}
	if err != nil {
		return nil, fmt.Errorf("NKey seed file: %w", err)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("NKey seed file %s is readable by group or others (mode %v): chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("NKey seed file: %w", err)
	}
	if _, err := ParseSeed(b); err != nil {
		return nil, fmt.Errorf("NKey seed file %s: %w", path, err)
	}
	return bytes.TrimSpace(b), nil
}

// WriteSeedFile writes seed to path with mode 0600, atomically, creating
// the directory (0700) when missing.
func WriteSeedFile(path string, seed []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("natsauth: %w", err)
	}
	return atomicfile.Write(path, append(bytes.TrimSpace(bytes.Clone(seed)), '\n'))
}

// LoadOrCreateSeed returns the seed in path, creating a new user seed there
// first when the file does not exist. created reports the latter.
func LoadOrCreateSeed(path string) (seed []byte, publicKey string, created bool, err error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		seed, pub, err := NewUser()
		if err != nil {
			return nil, "", false, err
		}
		if err := WriteSeedFile(path, seed); err != nil {
			return nil, "", false, err
		}
		return seed, pub, true, nil
	}
	seed, err = ReadSeedFile(path)
	if err != nil {
		return nil, "", false, err
	}
	pub, err := ParseSeed(seed)
	return seed, pub, false, err
}
