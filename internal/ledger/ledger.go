// Package ledger is the agent's admission ledger: the on-disk record that
// makes command execution at-most-once across redeliveries, replays and
// crashes, while every admitted command still gets exactly one answer.
//
// One small file per request (named by a hash of the request_id, so message
// content never chooses a path) moves through the states
//
//	admitted → launching → done
//
// with an atomic, fsynced write at each step:
//   - A request seen again with the same bytes is a Duplicate and is not run
//     again; with different bytes it is a Conflict (refused, logged as a
//     security event).
//   - After a crash, an entry still "admitted" was never launched and may be
//     run; an entry "launching" whose outcome never reached the outbox gets
//     an "outcome unknown" result — never a second launch.
//   - Entries are kept as tombstones for Retention (the EXEC stream's max
//     age), so a replay can never resurrect a command the agent already saw.
//
// The files are the truth. The ledger keeps a write-through copy of the
// entries that are not done yet (admitted or launching: the commands in
// flight, a handful) so that marking one does not read and decode its file
// again; the copy changes only after the file was written, and a done
// entry leaves it, so it is bounded by the work in flight and never answers
// for a request it does not hold (those are read from disk, as after a
// restart, when it starts empty).
package ledger

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/kanade-project/kanade/internal/atomicfile"
)

// State of an entry.
type State string

const (
	Admitted  State = "admitted"
	Launching State = "launching"
	Done      State = "done"
)

// Retention is how long a done entry is kept: as long as EXEC can replay.
const Retention = 7*24*time.Hour + time.Hour

// Entry is the record of one request.
type Entry struct {
	RequestID string `json:"request_id"`
	ExecID    string `json:"exec_id"`
	// BodySHA256 identifies the exact command bytes.
	BodySHA256 string `json:"body_sha256"`
	// ResultID is minted at admission, so that an "outcome unknown" result
	// and a real one can never both exist under different ids.
	ResultID   string    `json:"result_id"`
	State      State     `json:"state"`
	AdmittedAt time.Time `json:"admitted_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	// Command is the raw command, kept while not done so that an entry
	// admitted but never launched can be run after a crash.
	Command json.RawMessage `json:"command,omitempty"`
}

// Verdict of Admit.
type Verdict int

const (
	// New: recorded; the caller runs it.
	New Verdict = iota
	// Duplicate: same request, same bytes, already admitted.
	Duplicate
	// Conflict: same request_id, different bytes.
	Conflict
)

// Ledger is a directory of entries. Its methods are safe for concurrent use.
type Ledger struct {
	dir string
	now func() time.Time
	mu  sync.Mutex
	// live is the write-through copy of the entries not done, by
	// request_id; guarded by mu. An entry's Command is never modified in
	// place (Done replaces it with nil), so copies handed out share it.
	live map[string]Entry
}

// Open opens (creating) the ledger in dir.
func Open(dir string) (*Ledger, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	return &Ledger{dir: dir, now: time.Now, live: map[string]Entry{}}, nil
}

// BodyHash is the identity of a command's exact bytes.
func BodyHash(body []byte) string {
	s := sha256.Sum256(body)
	return hex.EncodeToString(s[:])
}

func (l *Ledger) path(requestID string) string {
	s := sha256.Sum256([]byte(requestID))
	return filepath.Join(l.dir, hex.EncodeToString(s[:16])+".json")
}

// Admit records a request before it is acted on. For New the returned
// entry carries resultID; for Duplicate and Conflict it is the existing one.
func (l *Ledger) Admit(requestID, execID string, body []byte, resultID string) (Verdict, Entry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	hash := BodyHash(body)
	old, err := l.read(requestID)
	switch {
	case err == nil:
		if old.BodySHA256 == hash {
			return Duplicate, old, nil
		}
		return Conflict, old, nil
	case !errors.Is(err, fs.ErrNotExist):
		return 0, Entry{}, err
	}
	now := l.now().UTC()
	// The command as its file will hold it (compacted, HTML-escaped, as
	// encoding/json writes a RawMessage), so that the copy kept in live is
	// what a read of the file would return; it is also the caller's body
	// no longer, which the caller may reuse.
	cmd, err := json.Marshal(json.RawMessage(body))
	if err != nil {
		return 0, Entry{}, fmt.Errorf("ledger: encoding the command of %s: %w", requestID, err)
	}
	e := Entry{RequestID: requestID, ExecID: execID, BodySHA256: hash, ResultID: resultID, State: Admitted, AdmittedAt: now, UpdatedAt: now, Command: cmd}
	// Admission is written without fsync: until the launching mark (which
	// is fsynced) nothing has run, so an admission lost to a power cut only
	// means the command is offered again — and run for the first time.
	if err := l.writeState(e, false); err != nil {
		return 0, Entry{}, err
	}
	l.remember(e)
	return New, e, nil
}

// Mark moves an entry to state. Done drops the stored command.
func (l *Ledger) Mark(requestID string, state State) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, err := l.read(requestID)
	if err != nil {
		return err
	}
	e.State = state
	e.UpdatedAt = l.now().UTC()
	if state == Done {
		e.Command = nil
	}
	if err := l.writeState(e, true); err != nil {
		// The file still holds the old state (atomicfile), and so
		// does live.
		return err
	}
	l.remember(e)
	return nil
}

// Get returns the entry of requestID.
func (l *Ledger) Get(requestID string) (Entry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.read(requestID)
}

// remember updates live after e was written to its file (l.mu held).
func (l *Ledger) remember(e Entry) {
	if e.State == Done {
		delete(l.live, e.RequestID)
		return
	}
	l.live[e.RequestID] = e
}

// Unfinished returns the entries that are not done (crash recovery).
func (l *Ledger) Unfinished() ([]Entry, error) {
	var out []Entry
	err := l.each(func(e Entry, _ string) {
		if e.State != Done {
			out = append(out, e)
		}
	})
	return out, err
}

// Prune deletes done entries older than Retention and returns how many.
// A file that does not decode is removed too: it cannot protect anything.
func (l *Ledger) Prune() (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cut := l.now().Add(-Retention)
	n := 0
	des, err := os.ReadDir(l.dir)
	if err != nil {
		return 0, err
	}
	for _, de := range des {
		p := filepath.Join(l.dir, de.Name())
		if de.IsDir() {
			continue
		}
		if strings.HasPrefix(de.Name(), atomicfile.TempPrefix) {
			_ = os.Remove(p)
			continue
		}
		e, err := readFile(p)
		if err != nil || (e.State == Done && e.UpdatedAt.Before(cut)) {
			if os.Remove(p) == nil {
				n++
				l.forgetPath(p)
			}
		}
	}
	return n, nil
}

// forgetPath drops the live copy whose file was p (l.mu held). Prune
// removes only done or undecodable files, which live never holds unless a
// file was changed behind the ledger's back; then the disk wins.
func (l *Ledger) forgetPath(p string) {
	for id := range l.live {
		if l.path(id) == p {
			delete(l.live, id)
		}
	}
}

// Len is the number of entries (tombstones included).
func (l *Ledger) Len() int {
	n := 0
	_ = l.each(func(Entry, string) { n++ })
	return n
}

func (l *Ledger) each(fn func(Entry, string)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	des, err := os.ReadDir(l.dir)
	if err != nil {
		return err
	}
	for _, de := range des {
		if de.IsDir() || !strings.HasSuffix(de.Name(), ".json") || strings.HasPrefix(de.Name(), atomicfile.TempPrefix) {
			continue
		}
		p := filepath.Join(l.dir, de.Name())
		if e, err := readFile(p); err == nil {
			fn(e, p)
		}
	}
	return nil
}

// read returns the entry of requestID from live, or else from its file
// (l.mu held).
func (l *Ledger) read(requestID string) (Entry, error) {
	if e, ok := l.live[requestID]; ok {
		return e, nil
	}
	e, err := readFile(l.path(requestID))
	if err != nil {
		return e, err
	}
	if e.RequestID != requestID {
		// A hash collision on 128 bits is not a practical concern, but
		// treating it as "unknown" would re-run a command: refuse instead.
		return e, fmt.Errorf("ledger: entry for %q holds %q", requestID, e.RequestID)
	}
	return e, nil
}

func readFile(p string) (Entry, error) {
	var e Entry
	b, err := os.ReadFile(p)
	if err != nil {
		return e, err
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return e, fmt.Errorf("ledger: %s: %w", filepath.Base(p), err)
	}
	return e, nil
}

func (l *Ledger) writeState(e Entry, durable bool) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	write := atomicfile.WriteNoSync
	if durable {
		write = atomicfile.Write
	}
	if err := write(l.path(e.RequestID), b); err != nil {
		return fmt.Errorf("ledger: writing %s: %w", e.RequestID, err)
	}
	return nil
}
