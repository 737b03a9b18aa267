// Package outbox is the agent's durable queue of messages for JetStream:
// results, started-events, timeline events and inventory. Nothing the agent
// owes the backend lives only in memory.
//
// Guarantees:
//   - Enqueue returns only after the entry is on disk (temp file, fsync,
//     rename, directory fsync); a crash at any point leaves either the whole
//     entry or nothing.
//   - The drain publishes through JetStream with the entry's message id
//     (Nats-Msg-Id) and deletes the file only after the broker's PubAck, so a
//     publish retried after a lost acknowledgement is stored once.
//   - Oldest first, but one failing file never holds up the others: each file
//     has its own backoff (1 s doubling to 256 s), a warning from the 5th
//     failure, and is moved to stuck/ at the 10th. A file that cannot be
//     decoded is moved to corrupt/ at once.
//   - Attachments (output above the inline limit) are stored beside the
//     entry and uploaded to their object store before the message that
//     references them is published.
//
// The file is the durable copy of an entry; the drain sends entries this
// process enqueued from a copy kept in memory (up to Options.MemoryBytes in
// all) instead of reading their files back, and reads the file for the
// others (found at Open, or beyond the budget). The copy is the entry
// exactly as its file decodes, made only once the file is committed and
// dropped with it, so a crash loses nothing the file did not hold.
package outbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/kanade-project/kanade/internal/atomicfile"
)

// Entry is one queued message.
type Entry struct {
	Subject string `json:"subject"`
	// MsgID is the JetStream de-duplication id (result_id for results).
	MsgID string          `json:"msg_id"`
	Data  json.RawMessage `json:"data"`
	// Attachments are uploaded before the message is published.
	Attachments []Attachment `json:"attachments,omitempty"`
	// Kind is informational (result, started, obs, inventory).
	Kind string `json:"kind,omitempty"`
	// Ref is the owner's reference (the request_id of a result), handed
	// back to Options.OnSent.
	Ref string `json:"ref,omitempty"`
	// BestEffort entries skip the fsync: losing one to a power cut is
	// harmless (a started-event that the result supersedes).
	BestEffort bool `json:"-"`
}

// Attachment is content for an object store. Content is written to its own
// file at Enqueue and is not part of the JSON entry.
type Attachment struct {
	Bucket  string `json:"bucket"`
	Key     string `json:"key"`
	File    string `json:"file"`
	Content []byte `json:"-"`
}

// ErrUnavailable, returned (wrapped) by a Publisher, means the broker
// cannot be reached at all. Such an attempt is not counted against the
// entry: a laptop that is offline for a week must not move its results to
// stuck/. The drain pauses until the next Wake or RetryNow, or at the
// latest until a backoff (BaseBackoff doubling to MaxBackoff) runs out, so
// that a lost wake-up cannot park the queue.
var ErrUnavailable = errors.New("broker unavailable")

// Publisher is the outbox's view of the broker.
type Publisher interface {
	// Publish sends data and returns when JetStream acknowledged it.
	Publish(ctx context.Context, subject, msgID string, data []byte) error
	// Upload stores r under key in the object store bucket (overwriting).
	Upload(ctx context.Context, bucket, key string, r io.Reader) error
}

// Options tune the drain; zero values take the documented defaults.
type Options struct {
	// BaseBackoff is the first per-file retry delay (default 1 s); it
	// doubles up to MaxBackoff (default 256 s).
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
	// WarnAfter failures a warning is logged (default 5); at StuckAfter
	// failures the file moves to stuck/ (default 10).
	WarnAfter  int
	StuckAfter int
	// PublishTimeout bounds one publish or upload (default 10 s).
	PublishTimeout time.Duration
	// MemoryBytes bounds the in-memory copies of pending entries the
	// drain sends without reading their files (default 4 MiB; negative:
	// none, every entry is read from disk).
	MemoryBytes int
	Logger      *slog.Logger
	// OnSent is called after the broker acknowledged an entry and before
	// its file is deleted; if it fails the file stays and is sent again
	// (the message id makes that harmless). The admission ledger marks a
	// request done here, so that "done" is never recorded for an outcome
	// that could still be lost, and an outcome is never deleted before the
	// ledger knows it was delivered.
	OnSent func(Entry) error
}

// Outbox is a directory of pending entries.
type Outbox struct {
	dir  string
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	seq     uint64
	pending map[string]*fileState // by file name; a fileState is guarded by mu too
	wake    chan struct{}
	// memBytes is the sum of the sizes of the in-memory copies held by
	// pending entries (fileState.mem); guarded by mu.
	memBytes int

	// outages counts consecutive ErrUnavailable passes; drain only.
	outages int
}

type fileState struct {
	failures int
	nextTry  time.Time
	// mem is the entry as its file decodes, when the drain may send it
	// without reading the file; memSize is what it counts in memBytes.
	mem     *Entry
	memSize int
}

const (
	entrySuffix = ".json"
	tmpPrefix   = atomicfile.TempPrefix
)

// Open opens (creating) the outbox in dir and recovers it: complete
// entries left in temp files by a crash are committed, partial ones removed.
func Open(dir string, o Options) (*Outbox, error) {
	if o.BaseBackoff <= 0 {
		o.BaseBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 256 * time.Second
	}
	if o.WarnAfter <= 0 {
		o.WarnAfter = 5
	}
	if o.StuckAfter <= 0 {
		o.StuckAfter = 10
	}
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = 10 * time.Second
	}
	if o.MemoryBytes == 0 {
		o.MemoryBytes = 4 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	for _, d := range []string{dir, filepath.Join(dir, "stuck"), filepath.Join(dir, "corrupt")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("outbox: %w", err)
		}
	}
	ob := &Outbox{dir: dir, opts: o, log: o.Logger.With("component", "outbox"), pending: map[string]*fileState{}, wake: make(chan struct{}, 1)}
	if err := ob.recover(); err != nil {
		return nil, err
	}
	return ob, nil
}

// recover commits complete temp entries and indexes pending files.
func (ob *Outbox) recover() error {
	des, err := os.ReadDir(ob.dir)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	for _, de := range des {
		name := de.Name()
		if de.IsDir() {
			continue
		}
		switch {
		case strings.HasPrefix(name, tmpPrefix) && strings.HasSuffix(name, entrySuffix):
			p := filepath.Join(ob.dir, name)
			final := strings.TrimPrefix(name, tmpPrefix)
			if e, err := readEntry(p); err == nil && ob.attachmentsPresent(e) {
				// The entry was fsynced before the crash: whoever
				// enqueued it may already have recorded it as sent.
				if err := os.Rename(p, filepath.Join(ob.dir, final)); err != nil {
					return fmt.Errorf("outbox: recovering %s: %w", name, err)
				}
				ob.log.Info("recovered an entry interrupted by a crash", "file", final)
				ob.index(final)
			} else {
				_ = os.Remove(p)
			}
		case strings.HasSuffix(name, entrySuffix):
			ob.index(name)
		}
	}
	// Attachment files are named <entry base>.att<n>; those of an entry
	// that was never committed (a crash inside Enqueue) are garbage.
	for _, de := range des {
		name := de.Name()
		i := strings.LastIndex(name, ".att")
		if de.IsDir() || i < 0 || strings.HasPrefix(name, tmpPrefix) {
			continue
		}
		base, n := name[:i], name[i+len(".att"):]
		if _, err := strconv.Atoi(n); err != nil {
			continue
		}
		if _, pending := ob.pending[base+entrySuffix]; !pending {
			_ = os.Remove(filepath.Join(ob.dir, name))
		}
	}
	return nil
}

func (ob *Outbox) attachmentsPresent(e Entry) bool {
	for _, a := range e.Attachments {
		if _, err := os.Stat(filepath.Join(ob.dir, a.File)); err != nil {
			return false
		}
	}
	return true
}

func (ob *Outbox) index(name string) {
	if s, ok := parseSeq(name); ok && s >= ob.seq {
		ob.seq = s + 1
	}
	ob.pending[name] = &fileState{}
}

// file names: <20-digit seq>_<sanitised msg id>.json, so a directory
// listing sorts oldest first and a message id can be found by name.
func parseSeq(name string) (uint64, bool) {
	head, _, ok := strings.Cut(name, "_")
	if !ok {
		return 0, false
	}
	s, err := strconv.ParseUint(head, 10, 64)
	return s, err == nil
}

// safeNameMax bounds SafeName, keeping every outbox file name well under
// the 255-byte limit of common file systems.
const safeNameMax = 120

// SafeName maps an id from a message to a file-name fragment: ids come from
// the network and must never choose a path. The result holds only
// [A-Za-z0-9_~-] and differs for different ids (Has relies on it):
// letters, digits, '-' and '_' stand for themselves, any other rune is "~"
// and six hex digits, a byte that is not UTF-8 is "~~" and two; an id whose
// encoding would exceed safeNameMax is cut and ends in "~~~" and a hash of
// the whole id ("~~~" occurs in no uncut encoding).
func SafeName(id string) string {
	var b strings.Builder
	for i := 0; i < len(id) && b.Len() <= safeNameMax; {
		r, size := utf8.DecodeRuneInString(id[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, "~~%02x", id[i])
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			fmt.Fprintf(&b, "~%06x", r)
		}
		i += size
	}
	if b.Len() <= safeNameMax {
		return b.String()
	}
	sum := sha256.Sum256([]byte(id))
	h := hex.EncodeToString(sum[:16])
	return b.String()[:safeNameMax-len("~~~")-len(h)] + "~~~" + h
}

// Enqueue stores e (durably unless e.BestEffort) and wakes the drain.
func (ob *Outbox) Enqueue(e Entry) error {
	ob.mu.Lock()
	seq := ob.seq
	ob.seq++
	ob.mu.Unlock()
	base := fmt.Sprintf("%020d_%s", seq, SafeName(e.MsgID))
	for i := range e.Attachments {
		a := &e.Attachments[i]
		a.File = fmt.Sprintf("%s.att%d", base, i)
		if err := ob.write(filepath.Join(ob.dir, a.File), a.Content, !e.BestEffort); err != nil {
			return fmt.Errorf("outbox: writing attachment: %w", err)
		}
	}
	// Data as the file will hold it (encoding/json compacts and
	// HTML-escapes a RawMessage): the in-memory copy must be what a read
	// of the file returns, and re-encoding it below changes nothing.
	data, err := json.Marshal(e.Data)
	if err != nil {
		return fmt.Errorf("outbox: encoding entry data: %w", err)
	}
	e.Data = data
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("outbox: encoding entry: %w", err)
	}
	name := base + entrySuffix
	tmp := filepath.Join(ob.dir, tmpPrefix+name)
	if err := ob.write(tmp, b, !e.BestEffort); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(ob.dir, name)); err != nil {
		return fmt.Errorf("outbox: committing entry: %w", err)
	}
	if !e.BestEffort {
		atomicfile.SyncDir(ob.dir)
	}
	st := &fileState{}
	ob.mu.Lock()
	if size, ok := memSize(e); ok && ob.memBytes+size <= ob.opts.MemoryBytes {
		st.mem, st.memSize = asDecoded(e), size
		ob.memBytes += size
	}
	ob.pending[name] = st
	ob.mu.Unlock()
	ob.Wake()
	return nil
}

// asDecoded returns e as readEntry returns it from e's file (Data already
// in its encoded form): without what is not written (attachment content,
// BestEffort).
func asDecoded(e Entry) *Entry {
	e.BestEffort = false
	if len(e.Attachments) == 0 {
		e.Attachments = nil // omitempty: the file has none
	} else {
		atts := make([]Attachment, len(e.Attachments))
		for i, a := range e.Attachments {
			atts[i] = Attachment{Bucket: a.Bucket, Key: a.Key, File: a.File}
		}
		e.Attachments = atts
	}
	return &e
}

// memSize is what an in-memory copy of e costs, and whether e may be sent
// from one: only when its file decodes to exactly e. encoding/json writes
// invalid UTF-8 in a string as U+FFFD, and readEntry refuses some entries
// (they go to corrupt/ through the file, as before).
func memSize(e Entry) (int, bool) {
	if err := checkEntry(e); err != nil {
		return 0, false
	}
	size := 256 + len(e.Data) // 256: the struct, map and slice headers
	for _, s := range []string{e.Subject, e.MsgID, e.Kind, e.Ref} {
		if !utf8.ValidString(s) {
			return 0, false
		}
		size += len(s)
	}
	for _, a := range e.Attachments {
		for _, s := range []string{a.Bucket, a.Key, a.File} {
			if !utf8.ValidString(s) {
				return 0, false
			}
			size += len(s) + 16
		}
	}
	return size, true
}

func (ob *Outbox) write(p string, b []byte, durable bool) error {
	if durable {
		return atomicfile.WriteSync(p, b)
	}
	return os.WriteFile(p, b, 0o600)
}

// RetryNow makes every waiting entry due at once and wakes the drain: a
// reconnection is news that makes earlier failures irrelevant.
func (ob *Outbox) RetryNow() {
	ob.mu.Lock()
	for _, st := range ob.pending {
		st.nextTry = time.Time{}
	}
	ob.mu.Unlock()
	ob.Wake()
}

// Wake asks the drain to try the due entries now (new entry).
func (ob *Outbox) Wake() {
	select {
	case ob.wake <- struct{}{}:
	default:
	}
}

// Depth is the number of entries waiting.
func (ob *Outbox) Depth() int {
	ob.mu.Lock()
	defer ob.mu.Unlock()
	return len(ob.pending)
}

// Has reports whether an entry with msgID is waiting (crash recovery of the
// admission ledger asks this).
func (ob *Outbox) Has(msgID string) bool {
	// The whole id part of <seq>_<SafeName(id)>.json must match: a suffix
	// match would find "b" in "a_b" (SafeName keeps '_').
	want := SafeName(msgID) + entrySuffix
	ob.mu.Lock()
	defer ob.mu.Unlock()
	for name := range ob.pending {
		if _, rest, ok := strings.Cut(name, "_"); ok && rest == want {
			return true
		}
	}
	return false
}

// Run drains the outbox until ctx ends. It sleeps on a timer or a wake-up,
// never polls.
func (ob *Outbox) Run(ctx context.Context, pub Publisher) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		next := ob.drainOnce(ctx, pub)
		if ctx.Err() != nil {
			return
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = max(time.Until(next), 0)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-ob.wake:
		case <-timer.C:
		}
	}
}

// Flush makes one pass over the due entries (a last chance at shutdown).
func (ob *Outbox) Flush(ctx context.Context, pub Publisher) { ob.drainOnce(ctx, pub) }

// drainOnce tries every due file, oldest first, and returns when the
// earliest not-yet-due file becomes due (zero: none pending).
func (ob *Outbox) drainOnce(ctx context.Context, pub Publisher) time.Time {
	ob.mu.Lock()
	names := make([]string, 0, len(ob.pending))
	for n := range ob.pending {
		names = append(names, n)
	}
	ob.mu.Unlock()
	slices.Sort(names)
	var next time.Time
	for _, name := range names {
		if ctx.Err() != nil {
			return time.Time{}
		}
		// RetryNow writes nextTry from another goroutine: read and
		// write a fileState under mu only.
		ob.mu.Lock()
		st, ok := ob.pending[name]
		var nextTry time.Time
		if ok {
			nextTry = st.nextTry
		}
		ob.mu.Unlock()
		if !ok {
			continue
		}
		if nextTry.After(time.Now()) {
			if next.IsZero() || nextTry.Before(next) {
				next = nextTry
			}
			continue
		}
		err := ob.send(ctx, pub, name)
		if err == nil {
			ob.outages = 0
			continue
		}
		if errors.Is(err, ErrUnavailable) {
			// Nothing else will get through either: wait for a Wake
			// (reconnect), or as a safety net for a backoff.
			ob.outages++
			d := backoff(ob.opts.BaseBackoff, ob.opts.MaxBackoff, ob.outages)
			ob.log.Debug("broker unavailable; pausing the drain", "retry_in", d)
			return time.Now().Add(d)
		}
		if errors.Is(err, errCorrupt) {
			ob.log.Error("moving an undecodable entry to corrupt/", "file", name, "err", err)
			ob.move(name, "corrupt")
			continue
		}
		if ctx.Err() != nil {
			return time.Time{}
		}
		ob.mu.Lock()
		st.failures++
		failures := st.failures
		d := backoff(ob.opts.BaseBackoff, ob.opts.MaxBackoff, failures)
		nextTry = time.Now().Add(d)
		st.nextTry = nextTry
		ob.mu.Unlock()
		if failures >= ob.opts.StuckAfter {
			ob.log.Error("giving up on an entry after repeated failures; moved to stuck/", "file", name, "failures", failures, "err", err)
			ob.move(name, "stuck")
			continue
		}
		if failures >= ob.opts.WarnAfter {
			ob.log.Warn("entry keeps failing", "file", name, "failures", failures, "retry_in", d, "err", err)
		} else {
			ob.log.Debug("entry not sent; will retry", "file", name, "failures", failures, "retry_in", d, "err", err)
		}
		if next.IsZero() || nextTry.Before(next) {
			next = nextTry
		}
	}
	return next
}

var errCorrupt = errors.New("corrupt outbox entry")

// backoff is base doubled for each failure after the first, capped at max
// (without the overflow of a plain shift when StuckAfter is large).
func backoff(base, max time.Duration, failures int) time.Duration {
	d := base
	for i := 1; i < failures && d < max; i++ {
		if d > max/2 {
			return max
		}
		d *= 2
	}
	return min(d, max)
}

func (ob *Outbox) send(ctx context.Context, pub Publisher, name string) error {
	p := filepath.Join(ob.dir, name)
	e, err := ob.entry(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			ob.forget(name)
			return nil
		}
		return err
	}
	for _, a := range e.Attachments {
		f, err := os.Open(filepath.Join(ob.dir, a.File))
		if err != nil {
			return fmt.Errorf("%w: attachment %s: %v", errCorrupt, a.File, err)
		}
		uctx, cancel := context.WithTimeout(ctx, ob.opts.PublishTimeout+time.Duration(len(e.Attachments))*time.Minute)
		err = pub.Upload(uctx, a.Bucket, a.Key, f)
		cancel()
		f.Close()
		if err != nil {
			return fmt.Errorf("uploading %s/%s: %w", a.Bucket, a.Key, err)
		}
	}
	pctx, cancel := context.WithTimeout(ctx, ob.opts.PublishTimeout)
	err = pub.Publish(pctx, e.Subject, e.MsgID, e.Data)
	cancel()
	if err != nil {
		return err
	}
	if ob.opts.OnSent != nil {
		if err := ob.opts.OnSent(e); err != nil {
			return fmt.Errorf("after sending: %w", err)
		}
	}
	for _, a := range e.Attachments {
		_ = os.Remove(filepath.Join(ob.dir, a.File))
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		ob.log.Warn("published entry could not be deleted; it will be sent again (deduplicated by msg id)", "file", name, "err", err)
		return nil
	}
	ob.forget(name)
	return nil
}

// entry returns the pending entry name: its in-memory copy, or else what
// its file holds.
func (ob *Outbox) entry(name string) (Entry, error) {
	ob.mu.Lock()
	var mem *Entry
	if st, ok := ob.pending[name]; ok {
		mem = st.mem
	}
	ob.mu.Unlock()
	if mem != nil {
		// Shallow copy: OnSent gets its own struct, and nothing
		// writes into Data or Attachments after Enqueue.
		return *mem, nil
	}
	return readEntry(filepath.Join(ob.dir, name))
}

func (ob *Outbox) forget(name string) {
	ob.mu.Lock()
	if st, ok := ob.pending[name]; ok {
		ob.memBytes -= st.memSize
		delete(ob.pending, name)
	}
	ob.mu.Unlock()
}

func (ob *Outbox) move(name, sub string) {
	src := filepath.Join(ob.dir, name)
	if e, err := ob.entry(name); err == nil {
		for _, a := range e.Attachments {
			_ = os.Rename(filepath.Join(ob.dir, a.File), filepath.Join(ob.dir, sub, a.File))
		}
	}
	if err := os.Rename(src, filepath.Join(ob.dir, sub, name)); err != nil {
		ob.log.Error("could not move entry", "file", name, "to", sub, "err", err)
	}
	ob.forget(name)
}

func readEntry(p string) (Entry, error) {
	var e Entry
	b, err := os.ReadFile(p)
	if err != nil {
		return e, err
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return e, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	return e, checkEntry(e)
}

// checkEntry refuses what the drain cannot send.
func checkEntry(e Entry) error {
	if e.Subject == "" || len(e.Data) == 0 {
		return fmt.Errorf("%w: no subject or data", errCorrupt)
	}
	for _, a := range e.Attachments {
		if !attachmentName(a.File) || a.Bucket == "" || a.Key == "" {
			return fmt.Errorf("%w: bad attachment %+v", errCorrupt, a)
		}
	}
	return nil
}

// attachmentName reports whether f is a name Enqueue gives an attachment,
// <20-digit seq>_<SafeName>.att<n>. The drain opens, renames and deletes
// the file an entry names, so a name read back from disk must not be
// "..", a path, a Windows drive or stream ("C:x", "x:ads") or a device:
// filepath.Base alone lets ".." and "x:y" through.
func attachmentName(f string) bool {
	base, n, ok := strings.Cut(f, ".att")
	if !ok || n == "" || len(n) > 6 || len(base) < 21 || len(base) > 21+safeNameMax || base[20] != '_' {
		return false
	}
	for _, c := range []byte(base[:20] + n) {
		if c < '0' || c > '9' {
			return false
		}
	}
	for _, c := range []byte(base[21:]) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}
