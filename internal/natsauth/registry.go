package natsauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kanade-project/kanade/internal/atomicfile"
	"github.com/kanade-project/kanade/internal/wire"
)

// Enrollment is one agent allowed on the broker: its pc_id and the public
// half of the NKey it authenticates with.
type Enrollment struct {
	PC         string    `json:"pc_id"`
	PublicKey  string    `json:"public_key"`
	EnrolledAt time.Time `json:"enrolled_at"`
}

// Registry is the enrolment store: the source of truth for which agents
// may connect, kept in one JSON file written atomically (never SQLite,
// which is a projection that can be dropped and rebuilt). Only public keys
// are stored; a seed is handed out once, at enrolment, and then forgotten.
// Safe for concurrent use.
type Registry struct {
	path string

	mu   sync.Mutex
	byPC map[string]Enrollment
}

type registryFile struct {
	Version int          `json:"version"`
	Agents  []Enrollment `json:"agents"`
}

// OpenRegistry loads the registry at path; a missing file is an empty
// registry. A file that does not parse is an error, not an empty registry:
// starting with nobody enrolled would lock every agent out.
func OpenRegistry(path string) (*Registry, error) {
	r := &Registry{path: path, byPC: map[string]Enrollment{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("enrolment registry: %w", err)
	}
	var f registryFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("enrolment registry %s is not valid (restore it from a backup, or re-enrol the agents): %w", path, err)
	}
	seen := map[string]string{}
	for _, e := range f.Agents {
		if err := (User{Role: RoleAgent, PC: e.PC, PublicKey: e.PublicKey}).Check(); err != nil {
			return nil, fmt.Errorf("enrolment registry %s: %w", path, err)
		}
		if other, dup := seen[e.PublicKey]; dup {
			return nil, fmt.Errorf("enrolment registry %s: %s and %s share the public key %s", path, other, e.PC, e.PublicKey)
		}
		seen[e.PublicKey] = e.PC
		r.byPC[e.PC] = e
	}
	return r, nil
}

// Path is the registry's file.
func (r *Registry) Path() string { return r.path }

// List returns the enrolled agents sorted by pc_id.
func (r *Registry) List() []Enrollment {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.listLocked()
}

func (r *Registry) listLocked() []Enrollment {
	out := make([]Enrollment, 0, len(r.byPC))
	for _, e := range r.byPC {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Enrollment) int { return strings.Compare(a.PC, b.PC) })
	return out
}

// Get returns pc's enrolment.
func (r *Registry) Get(pc string) (Enrollment, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.byPC[pc]
	return e, ok
}

// Users returns every enrolled agent as a NATS user.
func (r *Registry) Users() []User {
	var out []User
	for _, e := range r.List() {
		out = append(out, User{Role: RoleAgent, PC: e.PC, PublicKey: e.PublicKey})
	}
	return out
}

// Enroll mints a key pair for pc, records its public key (replacing any
// earlier one: re-enrolling a PC revokes its old key) and returns the seed,
// which is not kept anywhere. The file is written before Enroll returns.
func (r *Registry) Enroll(pc string, now time.Time) (seed []byte, e Enrollment, replaced bool, err error) {
	if err := wire.CheckToken("pc_id", pc); err != nil {
		return nil, e, false, err
	}
	seed, pub, err := NewUser()
	if err != nil {
		return nil, e, false, err
	}
	e = Enrollment{PC: pc, PublicKey: pub, EnrolledAt: now.UTC().Truncate(time.Second)}
	r.mu.Lock()
	defer r.mu.Unlock()
	_, replaced = r.byPC[pc]
	next := maps.Clone(r.byPC)
	next[pc] = e
	if err := r.save(next); err != nil {
		return nil, Enrollment{}, false, err
	}
	r.byPC = next
	return seed, e, replaced, nil
}

// Put records e, replacing pc's earlier key: for a key minted elsewhere,
// such as the dev agent's, whose seed the server keeps on disk.
func (r *Registry) Put(e Enrollment) error {
	if err := (User{Role: RoleAgent, PC: e.PC, PublicKey: e.PublicKey}).Check(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for pc, other := range r.byPC {
		if pc != e.PC && other.PublicKey == e.PublicKey {
			return fmt.Errorf("natsauth: the public key %s is already enrolled for %s", e.PublicKey, pc)
		}
	}
	next := maps.Clone(r.byPC)
	next[e.PC] = e
	if err := r.save(next); err != nil {
		return err
	}
	r.byPC = next
	return nil
}

// Revoke removes pc; ok is false when it was not enrolled.
func (r *Registry) Revoke(pc string) (e Enrollment, ok bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok = r.byPC[pc]
	if !ok {
		return e, false, nil
	}
	next := maps.Clone(r.byPC)
	delete(next, pc)
	if err := r.save(next); err != nil {
		return Enrollment{}, false, err
	}
	r.byPC = next
	return e, true, nil
}

// save writes next; the in-memory state changes only after it succeeded,
// so a failed write never leaves an agent enrolled on the broker but not on
// disk (or the reverse).
func (r *Registry) save(next map[string]Enrollment) error {
	f := registryFile{Version: 1, Agents: (&Registry{byPC: next}).listLocked()}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(r.path), 0o700); err != nil {
		return fmt.Errorf("enrolment registry: %w", err)
	}
	if err := atomicfile.Write(r.path, append(b, '\n')); err != nil {
		return fmt.Errorf("enrolment registry: %w", err)
	}
	return nil
}
