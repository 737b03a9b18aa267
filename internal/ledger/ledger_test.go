package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is an injectable time source for Ledger.now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

func openAt(t *testing.T, dir string, at time.Time) (*Ledger, *clock) {
	t.Helper()
	l, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: at}
	l.now = c.now
	return l, c
}

// jbody is a command body; the ledger stores it as JSON.
func jbody(s string) []byte {
	b, err := json.Marshal(map[string]string{"request_id": s})
	if err != nil {
		panic(err)
	}
	return b
}

func admit(t *testing.T, l *Ledger, requestID string, body []byte, resultID string) (Verdict, Entry) {
	t.Helper()
	v, e, err := l.Admit(requestID, "exec-"+requestID, body, resultID)
	if err != nil {
		t.Fatalf("Admit(%q): %v", requestID, err)
	}
	return v, e
}

func mark(t *testing.T, l *Ledger, requestID string, s State) {
	t.Helper()
	if err := l.Mark(requestID, s); err != nil {
		t.Fatalf("Mark(%q, %s): %v", requestID, s, err)
	}
}

func TestAdmitVerdicts(t *testing.T) {
	body := []byte(`{"request_id":"req-1","script":"echo hi"}`)
	tests := []struct {
		name         string
		requestID    string
		body         []byte
		want         Verdict
		wantResultID string // the result id the returned entry carries
		wantBody     []byte // the body the returned entry describes
	}{
		{name: "same request, same bytes", requestID: "req-1", body: body, want: Duplicate, wantResultID: "rid-first", wantBody: body},
		{name: "same request, different bytes", requestID: "req-1", body: []byte(`{"request_id":"req-1","script":"rm -rf /"}`), want: Conflict, wantResultID: "rid-first", wantBody: body},
		{name: "same request, one byte appended", requestID: "req-1", body: append(slices.Clone(body), ' '), want: Conflict, wantResultID: "rid-first", wantBody: body},
		{name: "other request, same bytes", requestID: "req-2", body: body, want: New, wantResultID: "rid-second", wantBody: body},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, _ := openAt(t, t.TempDir(), t0)
			v, first := admit(t, l, "req-1", body, "rid-first")
			if v != New || first.ResultID != "rid-first" || first.State != Admitted {
				t.Fatalf("first Admit = %v %+v, want New, rid-first, admitted", v, first)
			}
			if !bytes.Equal(first.Command, body) || first.BodySHA256 != BodyHash(body) || !first.AdmittedAt.Equal(t0) {
				t.Errorf("first entry = %+v, want the command, its hash and the admission time", first)
			}

			v, e := admit(t, l, tc.requestID, tc.body, "rid-second")
			if v != tc.want {
				t.Fatalf("second Admit = %v, want %v", v, tc.want)
			}
			if e.ResultID != tc.wantResultID {
				t.Errorf("second Admit's entry has result id %q, want %q", e.ResultID, tc.wantResultID)
			}
			if e.BodySHA256 != BodyHash(tc.wantBody) {
				t.Errorf("second Admit's entry describes body %s, want %s", e.BodySHA256, BodyHash(tc.wantBody))
			}
			// A Duplicate or Conflict never overwrites what was admitted.
			got, err := l.Get("req-1")
			if err != nil {
				t.Fatal(err)
			}
			if got.ResultID != "rid-first" || got.BodySHA256 != BodyHash(body) {
				t.Errorf("stored entry = %+v, want the first admission unchanged", got)
			}
		})
	}
}

func TestDuplicateKeepsResultIDInEveryState(t *testing.T) {
	for _, s := range []State{Admitted, Launching, Done} {
		t.Run(string(s), func(t *testing.T) {
			dir := t.TempDir()
			l, _ := openAt(t, dir, t0)
			body := jbody("cmd")
			admit(t, l, "req", body, "rid-minted")
			if s != Admitted {
				mark(t, l, "req", s)
			}
			for i, lg := range []*Ledger{l, mustOpen(t, dir)} { // and after a restart
				v, e := admit(t, lg, "req", body, fmt.Sprintf("rid-other-%d", i))
				if v != Duplicate || e.ResultID != "rid-minted" || e.State != s {
					t.Errorf("Admit again (ledger %d) = %v, %q, %s; want Duplicate, rid-minted, %s", i, v, e.ResultID, e.State, s)
				}
			}
		})
	}
}

func mustOpen(t *testing.T, dir string) *Ledger {
	t.Helper()
	l, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestMarkTransitions(t *testing.T) {
	l, c := openAt(t, t.TempDir(), t0)
	body := []byte(`{"script":"echo"}`)
	admit(t, l, "req", body, "rid")

	steps := []struct {
		state       State
		at          time.Time
		wantCommand []byte
	}{
		{Launching, t0.Add(time.Second), body},
		{Done, t0.Add(time.Minute), nil},
	}
	for _, st := range steps {
		c.set(st.at)
		mark(t, l, "req", st.state)
		e, err := l.Get("req")
		if err != nil {
			t.Fatal(err)
		}
		if e.State != st.state {
			t.Errorf("after Mark(%s) state = %s", st.state, e.State)
		}
		if !e.UpdatedAt.Equal(st.at) || !e.AdmittedAt.Equal(t0) {
			t.Errorf("after Mark(%s) admitted %v updated %v, want %v and %v", st.state, e.AdmittedAt, e.UpdatedAt, t0, st.at)
		}
		if !bytes.Equal(e.Command, st.wantCommand) {
			t.Errorf("after Mark(%s) command = %q, want %q", st.state, e.Command, st.wantCommand)
		}
		if e.ResultID != "rid" || e.ExecID != "exec-req" || e.BodySHA256 != BodyHash(body) {
			t.Errorf("after Mark(%s) identity changed: %+v", st.state, e)
		}
	}
	// The command is gone from the disk too, not only from the struct.
	raw, err := os.ReadFile(l.path("req"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("echo")) {
		t.Errorf("done entry still stores the command: %s", raw)
	}

	if err := l.Mark("never-admitted", Launching); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Mark of an unknown request = %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(l.path("never-admitted")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Mark of an unknown request created a file")
	}
}

func TestUnfinishedListsAdmittedAndLaunchingOnly(t *testing.T) {
	l, _ := openAt(t, t.TempDir(), t0)
	states := map[string]State{"req-a": Admitted, "req-l": Launching, "req-d": Done, "req-a2": Admitted}
	for id, s := range states {
		admit(t, l, id, jbody(id), "rid-"+id)
		if s != Admitted {
			mark(t, l, id, s)
		}
	}
	got, err := l.Unfinished()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range got {
		ids = append(ids, e.RequestID)
		if e.State != states[e.RequestID] {
			t.Errorf("%s listed as %s, want %s", e.RequestID, e.State, states[e.RequestID])
		}
		if !bytes.Equal(e.Command, jbody(e.RequestID)) {
			t.Errorf("%s listed without its command (%q): it could not be run after a crash", e.RequestID, e.Command)
		}
		if e.ResultID != "rid-"+e.RequestID {
			t.Errorf("%s listed with result id %q", e.RequestID, e.ResultID)
		}
	}
	slices.Sort(ids)
	if want := []string{"req-a", "req-a2", "req-l"}; !slices.Equal(ids, want) {
		t.Errorf("Unfinished = %v, want %v", ids, want)
	}
	if n := l.Len(); n != 4 {
		t.Errorf("Len = %d, want 4 (tombstones included)", n)
	}
}

func TestPrune(t *testing.T) {
	dir := t.TempDir()
	now := t0.Add(30 * 24 * time.Hour)
	l, c := openAt(t, dir, now)
	entries := []struct {
		id        string
		state     State
		updated   time.Time
		wantKept  bool
		rationale string
	}{
		{"old-done", Done, now.Add(-Retention - time.Second), false, "expired tombstone"},
		{"recent-done", Done, now.Add(-Retention + time.Second), true, "a replay could still bring it back"},
		{"fresh-done", Done, now, true, "just delivered"},
		{"old-admitted", Admitted, now.Add(-2 * Retention), true, "unfinished: never pruned"},
		{"old-launching", Launching, now.Add(-2 * Retention), true, "unfinished: never pruned"},
	}
	for _, e := range entries {
		c.set(e.updated)
		admit(t, l, e.id, jbody(e.id), "rid-"+e.id)
		if e.state != Admitted {
			mark(t, l, e.id, e.state)
		}
	}
	garbage := []string{"0123456789abcdef0123456789abcdef.json", "notes.txt", ".tmp-0123456789abcdef0123456789abcdef.json"}
	for _, g := range garbage {
		if err := os.WriteFile(filepath.Join(dir, g), []byte("{not json"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "subdir"), 0o700); err != nil {
		t.Fatal(err)
	}

	c.set(now)
	n, err := l.Prune()
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 { // the expired tombstone and the two undecodable files
		t.Errorf("Prune removed %d, want 3", n)
	}
	for _, e := range entries {
		_, err := l.Get(e.id)
		if kept := err == nil; kept != e.wantKept {
			t.Errorf("%s (%s): kept = %v, want %v (err %v)", e.id, e.rationale, kept, e.wantKept, err)
		}
	}
	for _, g := range garbage {
		if _, err := os.Stat(filepath.Join(dir, g)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("garbage file %s not removed", g)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "subdir")); err != nil {
		t.Errorf("Prune removed a directory: %v", err)
	}

	// A kept tombstone still stops a replay; a pruned one no longer does.
	if v, _ := admit(t, l, "recent-done", jbody("recent-done"), "rid-x"); v != Duplicate {
		t.Errorf("replay of a kept tombstone = %v, want Duplicate", v)
	}
	if v, _ := admit(t, l, "old-done", jbody("old-done"), "rid-x"); v != New {
		t.Errorf("request after its tombstone expired = %v, want New", v)
	}
	if n, err := l.Prune(); err != nil || n != 0 {
		t.Errorf("second Prune = %d, %v; want nothing to do", n, err)
	}
}

var entryName = regexp.MustCompile(`^[0-9a-f]{32}\.json$`)

func TestFileNamesNeverContainTheRequestID(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "data", "ledger")
	l, _ := openAt(t, dir, t0)
	ids := []string{
		"../../x", "../x.json", `..\..\x`, "/etc/passwd", "a/b/c", "", ".", "..",
		"C:\\Windows\\x", "nul\x00byte", "結果", strings.Repeat("r", 5000), "req-plain",
	}
	for _, id := range ids {
		v, e := admit(t, l, id, jbody("body "+id), "rid")
		if v != New {
			t.Errorf("Admit(%q) = %v, want New (no two ids share a file)", id, v)
		}
		if e.RequestID != id {
			t.Errorf("Admit(%q) entry has request id %q", id, e.RequestID)
		}
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(des) != len(ids) {
		t.Errorf("ledger dir holds %d files, want %d", len(des), len(ids))
	}
	for _, de := range des {
		if !entryName.MatchString(de.Name()) {
			t.Errorf("file name %q is not a hash", de.Name())
		}
		for _, id := range ids {
			if len(id) > 2 && strings.Contains(de.Name(), id) {
				t.Errorf("file name %q contains request id %q", de.Name(), id)
			}
		}
	}
	// Nothing was written outside the ledger directory.
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && filepath.Dir(p) != dir {
			t.Errorf("file written outside the ledger: %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if e, err := l.Get(id); err != nil || e.RequestID != id {
			t.Errorf("Get(%q) = %q, %v", id, e.RequestID, err)
		}
	}
}

func TestReopenSeesTheSameState(t *testing.T) {
	dir := t.TempDir()
	l, c := openAt(t, dir, t0)
	admit(t, l, "req-a", jbody("a"), "rid-a")
	admit(t, l, "req-l", jbody("l"), "rid-l")
	admit(t, l, "req-d", jbody("d"), "rid-d")
	c.set(t0.Add(time.Minute))
	mark(t, l, "req-l", Launching)
	mark(t, l, "req-d", Done)

	before := map[string]Entry{}
	for _, id := range []string{"req-a", "req-l", "req-d"} {
		e, err := l.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		before[id] = e
	}

	re := mustOpen(t, dir)
	for id, want := range before {
		got, err := re.Get(id)
		if err != nil {
			t.Fatalf("after reopening Get(%q): %v", id, err)
		}
		if got.State != want.State || got.ResultID != want.ResultID || got.ExecID != want.ExecID ||
			got.BodySHA256 != want.BodySHA256 || !bytes.Equal(got.Command, want.Command) ||
			!got.AdmittedAt.Equal(want.AdmittedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) {
			t.Errorf("after reopening %s = %+v, want %+v", id, got, want)
		}
	}
	un, err := re.Unfinished()
	if err != nil {
		t.Fatal(err)
	}
	if len(un) != 2 {
		t.Errorf("after reopening Unfinished = %+v, want req-a and req-l", un)
	}
	if re.Len() != 3 {
		t.Errorf("after reopening Len = %d, want 3", re.Len())
	}
}

func TestUndecodableEntryRefusesAdmission(t *testing.T) {
	dir := t.TempDir()
	l, _ := openAt(t, dir, t0)
	if err := os.WriteFile(l.path("req"), []byte("{torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Treating it as unknown could run the command a second time.
	if v, _, err := l.Admit("req", "exec", jbody("body"), "rid"); err == nil {
		t.Fatalf("Admit over an undecodable entry = %v, nil; want an error", v)
	}
}

func TestConcurrentAdmitYieldsExactlyOneNew(t *testing.T) {
	l, _ := openAt(t, t.TempDir(), t0)
	const n = 20
	body := []byte(`{"request_id":"req-race"}`)
	type result struct {
		v   Verdict
		e   Entry
		err error
	}
	results := make([]result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			v, e, err := l.Admit("req-race", "exec", body, fmt.Sprintf("rid-%d", i))
			results[i] = result{v, e, err}
		})
	}
	close(start)
	wg.Wait()

	var news int
	var minted string
	for _, r := range results {
		if r.err != nil {
			t.Fatalf("Admit: %v", r.err)
		}
		if r.v == New {
			news++
			minted = r.e.ResultID
		}
	}
	if news != 1 {
		t.Fatalf("%d goroutines got New, want exactly 1", news)
	}
	for i, r := range results {
		if r.v != New && r.v != Duplicate {
			t.Errorf("goroutine %d got %v, want Duplicate", i, r.v)
		}
		if r.e.ResultID != minted {
			t.Errorf("goroutine %d sees result id %q, want the one minted by New (%q)", i, r.e.ResultID, minted)
		}
	}
	if e, err := l.Get("req-race"); err != nil || e.ResultID != minted {
		t.Errorf("stored result id = %q (%v), want %q", e.ResultID, err, minted)
	}
}

// sameEntry reports how a and b differ ("" when they do not).
func sameEntry(a, b Entry) string {
	switch {
	case a.RequestID != b.RequestID, a.ExecID != b.ExecID, a.BodySHA256 != b.BodySHA256, a.ResultID != b.ResultID:
		return "identity"
	case a.State != b.State:
		return "state"
	case !a.AdmittedAt.Equal(b.AdmittedAt), !a.UpdatedAt.Equal(b.UpdatedAt):
		return "times"
	case !bytes.Equal(a.Command, b.Command):
		return fmt.Sprintf("command %q vs %q", a.Command, b.Command)
	}
	return ""
}

// assertSameAsFresh opens a second ledger on l's directory without closing
// l — what the next process finds after a crash — and checks that it gives
// every answer l gives from its in-memory copy: the entries, the Admit
// verdicts for the same and for other bytes, and the unfinished list.
func assertSameAsFresh(t *testing.T, step string, l *Ledger, ids []string, bodies map[string][]byte) {
	t.Helper()
	re := mustOpen(t, l.dir)
	re.now = l.now
	for _, id := range ids {
		want, wantErr := re.Get(id)
		got, gotErr := l.Get(id)
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("%s: Get(%s) = %v, fresh ledger %v", step, id, gotErr, wantErr)
		}
		if wantErr != nil {
			continue // unknown to both; Admit would make it New in both
		}
		if d := sameEntry(got, want); d != "" {
			t.Fatalf("%s: %s differs from the fresh ledger's (%s):\n got %+v\nwant %+v", step, id, d, got, want)
		}
		for _, body := range [][]byte{bodies[id], []byte(`{"other":"bytes"}`)} {
			gv, ge, gerr := l.Admit(id, "exec-"+id, body, "rid-new")
			wv, we, werr := re.Admit(id, "exec-"+id, body, "rid-new")
			if gerr != nil || werr != nil {
				t.Fatalf("%s: Admit(%s) errors %v / fresh %v", step, id, gerr, werr)
			}
			if gv != wv || sameEntry(ge, we) != "" {
				t.Fatalf("%s: Admit(%s, %s) = %v %+v, fresh ledger %v %+v", step, id, body, gv, ge, wv, we)
			}
		}
	}
	unfinished := func(lg *Ledger) map[string]State {
		es, err := lg.Unfinished()
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]State{}
		for _, e := range es {
			m[e.RequestID] = e.State
		}
		return m
	}
	if got, want := unfinished(l), unfinished(re); !maps.Equal(got, want) {
		t.Fatalf("%s: Unfinished = %v, fresh ledger %v", step, got, want)
	}
}

// TestLiveCopyAgreesWithAFreshLedgerAfterACrash: the ledger answers Mark,
// Get and Admit for entries in flight from memory. After every step of a
// request's life (admitted, launching, done, replayed, pruned, a failed
// write), a ledger opened fresh on the same directory — as after a crash,
// the first one never closed — gives the same verdicts and entries.
func TestLiveCopyAgreesWithAFreshLedgerAfterACrash(t *testing.T) {
	dir := t.TempDir()
	l, c := openAt(t, dir, t0)
	// Bodies as they come from the network: whitespace and characters
	// encoding/json escapes make the stored form differ from the bytes.
	bodies := map[string][]byte{}
	var ids []string
	for i := range 6 {
		id := fmt.Sprintf("req-%d", i)
		ids = append(ids, id)
		bodies[id] = []byte(fmt.Sprintf("{ \"request_id\" : %q,\n \"script\": \"test %d -lt 3 && echo '<ok>' > out\" }", id, i))
	}
	ids = append(ids, "never-seen")
	check := func(step string) { t.Helper(); assertSameAsFresh(t, step, l, ids, bodies) }

	for _, id := range ids[:6] {
		if v, _ := admit(t, l, id, bodies[id], "rid-"+id); v != New {
			t.Fatalf("Admit(%s) = %v", id, v)
		}
	}
	check("all admitted")
	c.set(t0.Add(time.Second))
	for _, id := range ids[1:6] {
		mark(t, l, id, Launching)
	}
	check("five launching")
	c.set(t0.Add(2 * time.Second))
	for _, id := range ids[2:6] {
		mark(t, l, id, Done)
	}
	check("four done")
	// Done again (an outcome re-sent after a lost delete) and the replay
	// of a done request come from the file, as after a restart.
	mark(t, l, "req-2", Done)
	if v, e := admit(t, l, "req-3", bodies["req-3"], "rid-replay"); v != Duplicate || e.State != Done || e.ResultID != "rid-req-3" {
		t.Fatalf("replay of a done request = %v %+v", v, e)
	}
	check("replayed")

	// A write that fails leaves the file as it was, and the live copy
	// with it: the temp path is taken by a directory (not empty, so the
	// clean-up after the failure cannot remove it), and the atomic write
	// cannot even start.
	tmp := filepath.Join(dir, ".tmp-"+filepath.Base(l.path("req-0")))
	blocker := filepath.Join(tmp, "blocker")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c.set(t0.Add(3 * time.Second))
	if err := l.Mark("req-0", Launching); err == nil {
		t.Fatal("Mark with an unwritable temp file succeeded")
	}
	if e, err := l.Get("req-0"); err != nil || e.State != Admitted {
		t.Fatalf("after a failed Mark the entry is %+v, %v; want still admitted", e, err)
	}
	check("failed write")
	for _, p := range []string{blocker, tmp} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	mark(t, l, "req-0", Launching)
	mark(t, l, "req-1", Done)
	check("written after all")

	// Tombstones expire; the request is new again in both.
	c.set(t0.Add(Retention + time.Hour))
	if n, err := l.Prune(); err != nil || n != 5 {
		t.Fatalf("Prune = %d, %v; want the 5 done entries", n, err)
	}
	check("pruned")
	if v, _ := admit(t, l, "req-4", bodies["req-4"], "rid-again"); v != New {
		t.Fatalf("Admit after the tombstone expired = %v, want New", v)
	}
	mark(t, l, "req-4", Launching)
	check("admitted again after pruning")
}

// BenchmarkRequestLifecycle is the ledger's share of one command: admit,
// launching (fsynced), done (fsynced).
func BenchmarkRequestLifecycle(b *testing.B) {
	l, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"id":"adhoc-run","request_id":"req","exec_id":"exec","script":"exit 0","shell":"sh"}`)
	for i := 0; b.Loop(); i++ {
		id := fmt.Sprintf("req-%d", i)
		if _, _, err := l.Admit(id, "exec", body, "rid"); err != nil {
			b.Fatal(err)
		}
		if err := l.Mark(id, Launching); err != nil {
			b.Fatal(err)
		}
		if err := l.Mark(id, Done); err != nil {
			b.Fatal(err)
		}
	}
}
