package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
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
