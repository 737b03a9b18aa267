package outbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/logtest"
	"github.com/kanade-project/kanade/internal/wire"
)

// ---------------------------------------------------------------------------
// A real publisher over JetStream (the same shape as the agent's
// jsPublisher), instrumented to count and order its calls.

type testPub struct {
	nc *nats.Conn
	js jetstream.JetStream

	mu      sync.Mutex
	objects map[string]jetstream.ObjectStore
	events  []string         // "upload <bucket>/<key>" and "publish <msgid>", successful calls only
	tries   map[string]int   // publish attempts per msg id
	lastErr map[string]error // last publish error per msg id

	publishes atomic.Int64 // every Publish call
	failures  atomic.Int64 // failed Publish calls
	uploads   atomic.Int64 // every Upload call
}

// newTestPub connects to srv the way the agent does: publishes are refused
// at once while disconnected (no reconnect buffer).
func newTestPub(t *testing.T, srv *brokertest.Server) (*testPub, *nats.Conn) {
	t.Helper()
	nc := srv.Connect(t, nats.ReconnectBufSize(-1))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &testPub{nc: nc, js: js, objects: map[string]jetstream.ObjectStore{}, tries: map[string]int{}, lastErr: map[string]error{}}, nc
}

func (p *testPub) Publish(ctx context.Context, subject, msgID string, data []byte) error {
	p.publishes.Add(1)
	var err error
	if !p.nc.IsConnected() {
		err = ErrUnavailable
	} else {
		msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
		if msgID != "" {
			msg.Header.Set(wire.HeaderMsgID, msgID)
		}
		_, err = p.js.PublishMsg(ctx, msg)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tries[msgID]++
	p.lastErr[msgID] = err
	if err != nil {
		p.failures.Add(1)
		return err
	}
	p.events = append(p.events, "publish "+msgID)
	return nil
}

func (p *testPub) Upload(ctx context.Context, bucket, key string, r io.Reader) error {
	p.uploads.Add(1)
	if !p.nc.IsConnected() {
		return ErrUnavailable
	}
	p.mu.Lock()
	obs, ok := p.objects[bucket]
	p.mu.Unlock()
	if !ok {
		var err error
		obs, err = p.js.ObjectStore(ctx, bucket)
		if err != nil {
			return fmt.Errorf("object store %s: %w", bucket, err)
		}
		p.mu.Lock()
		p.objects[bucket] = obs
		p.mu.Unlock()
	}
	if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: key}, r); err != nil {
		return err
	}
	p.mu.Lock()
	p.events = append(p.events, "upload "+bucket+"/"+key)
	p.mu.Unlock()
	return nil
}

func (p *testPub) Events() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.events)
}

func (p *testPub) Tries(msgID string) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tries[msgID], p.lastErr[msgID]
}

// ---------------------------------------------------------------------------
// helpers

func testEntry(subject, msgID string, n int) Entry {
	return Entry{
		Subject: subject,
		MsgID:   msgID,
		Data:    json.RawMessage(fmt.Sprintf(`{"result_id":%q,"n":%d}`, msgID, n)),
		Kind:    "result",
		Ref:     "ref-" + msgID,
	}
}

func open(t *testing.T, dir string, o Options) *Outbox {
	t.Helper()
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ob, err := Open(dir, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return ob
}

func enqueue(t *testing.T, ob *Outbox, e Entry) {
	t.Helper()
	if err := ob.Enqueue(e); err != nil {
		t.Fatalf("Enqueue(%s): %v", e.MsgID, err)
	}
}

// run drains ob in the background until the test ends.
func run(t *testing.T, ob *Outbox, pub Publisher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ob.Run(ctx, pub)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// streamMsgs returns every message of stream, in stream order.
func streamMsgs(t *testing.T, js jetstream.JetStream, stream string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	if info.State.Msgs == 0 {
		return nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("GetMsg(%d): %v", seq, err)
		}
		out = append(out, m)
	}
	return out
}

// entryFiles lists the committed entry files in dir (not sub-directories,
// not temp files).
func entryFiles(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		if !de.IsDir() && strings.HasSuffix(de.Name(), entrySuffix) && !strings.HasPrefix(de.Name(), tmpPrefix) {
			out = append(out, de.Name())
		}
	}
	return out
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	return out
}

// oversized is a valid JSON document the broker refuses: larger than the
// server's max_payload (1 MiB).
func oversized() json.RawMessage {
	return json.RawMessage(`"` + strings.Repeat("x", 1<<20+512) + `"`)
}

// ---------------------------------------------------------------------------
// tests

func TestEnqueuePersistsEntryAndReopenSeesIt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ob := open(t, dir, Options{})
	want := []Entry{
		testEntry(wire.SubjectResults("r1", "pc-1"), "rid-1", 1),
		testEntry(wire.SubjectResults("r2", "pc-1"), "rid-2", 2),
		{Subject: "events.started.e.pc", MsgID: "started-rid-3", Data: json.RawMessage(`{"x":1}`), Kind: "started"},
	}
	for _, e := range want {
		enqueue(t, ob, e)
	}
	if got := ob.Depth(); got != len(want) {
		t.Fatalf("Depth = %d, want %d", got, len(want))
	}

	files := entryFiles(t, dir)
	if len(files) != len(want) {
		t.Fatalf("entry files = %v, want %d", files, len(want))
	}
	for i, e := range want {
		name := files[i] // names sort oldest first
		if !strings.HasSuffix(name, "_"+SafeName(e.MsgID)+entrySuffix) {
			t.Errorf("file %d = %q, want it named after %q", i, name, e.MsgID)
		}
		got, err := readEntry(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("decoding %s: %v", name, err)
		}
		if got.Subject != e.Subject || got.MsgID != e.MsgID || !bytes.Equal(got.Data, e.Data) || got.Kind != e.Kind || got.Ref != e.Ref {
			t.Errorf("file %s = %+v, want %+v", name, got, e)
		}
	}
	for _, n := range dirNames(t, dir) {
		if strings.HasPrefix(n, tmpPrefix) {
			t.Errorf("temp file %s left behind after Enqueue", n)
		}
	}

	// A new process on the same directory sees the same queue.
	re := open(t, dir, Options{})
	if got := re.Depth(); got != len(want) {
		t.Fatalf("after reopening Depth = %d, want %d", got, len(want))
	}
	for _, e := range want {
		if !re.Has(e.MsgID) {
			t.Errorf("after reopening Has(%q) = false", e.MsgID)
		}
	}
	// New entries sort after the recovered ones.
	enqueue(t, re, testEntry(wire.SubjectResults("r4", "pc-1"), "rid-4", 4))
	files = entryFiles(t, dir)
	if last := files[len(files)-1]; !strings.HasSuffix(last, "_rid-4.json") {
		t.Errorf("newest entry sorts at %v, want last", files)
	}
}

func TestDrainPublishesOldestFirstWithMsgIDAndDeletes(t *testing.T) {
	t.Parallel()
	srv := brokertest.Start(t)
	pub, _ := newTestPub(t, srv)
	dir := t.TempDir()

	var mu sync.Mutex
	var sent []string
	ob := open(t, dir, Options{OnSent: func(e Entry) error {
		mu.Lock()
		defer mu.Unlock()
		sent = append(sent, e.Ref)
		return nil
	}})
	const n = 20
	subject := wire.SubjectResults("req-order", "pc-1")
	for i := range n {
		enqueue(t, ob, testEntry(subject, fmt.Sprintf("rid-%02d", i), i))
	}
	run(t, ob, pub)
	waitFor(t, 20*time.Second, "the outbox to drain", func() bool { return ob.Depth() == 0 })

	msgs := streamMsgs(t, srv.JetStream(t), wire.StreamResults)
	if len(msgs) != n {
		t.Fatalf("RESULTS holds %d messages, want %d", len(msgs), n)
	}
	for i, m := range msgs {
		id := fmt.Sprintf("rid-%02d", i)
		if m.Subject != subject {
			t.Errorf("message %d subject = %q, want %q", i, m.Subject, subject)
		}
		if got := m.Header.Get(wire.HeaderMsgID); got != id {
			t.Errorf("message %d %s = %q, want %q (oldest first)", i, wire.HeaderMsgID, got, id)
		}
		if want := testEntry(subject, id, i).Data; !bytes.Equal(m.Data, want) {
			t.Errorf("message %d data = %s, want %s", i, m.Data, want)
		}
	}
	if files := entryFiles(t, dir); len(files) != 0 {
		t.Errorf("files left after every PubAck: %v", files)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sent) != n {
		t.Fatalf("OnSent called %d times, want %d: %v", len(sent), n, sent)
	}
	for i, ref := range sent {
		if want := fmt.Sprintf("ref-rid-%02d", i); ref != want {
			t.Errorf("OnSent call %d got Ref %q, want %q", i, ref, want)
		}
	}
}

func TestOnSentFailureKeepsTheFile(t *testing.T) {
	t.Parallel()
	srv := brokertest.Start(t)
	pub, _ := newTestPub(t, srv)
	dir := t.TempDir()
	var calls atomic.Int64
	ob := open(t, dir, Options{BaseBackoff: time.Hour, OnSent: func(Entry) error {
		calls.Add(1)
		return errors.New("ledger unavailable")
	}})
	enqueue(t, ob, testEntry(wire.SubjectResults("r", "pc-1"), "rid-onsent", 0))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ob.Flush(ctx, pub)
	if calls.Load() != 1 {
		t.Fatalf("OnSent calls = %d, want 1", calls.Load())
	}
	if ob.Depth() != 1 || len(entryFiles(t, dir)) != 1 {
		t.Errorf("entry deleted although OnSent failed (Depth %d, files %v)", ob.Depth(), entryFiles(t, dir))
	}
}

func TestRetriedPublishIsStoredOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// before runs before the outbox entry is drained.
		before func(t *testing.T, ob *Outbox, pub *testPub, e Entry)
		// copies is how many times the entry is enqueued.
		copies int
		// wantPublishes is how many PubAcks the outbox received.
		wantPublishes int
	}{
		{
			name:          "two copies of the same msg id queued",
			copies:        2,
			wantPublishes: 2,
		},
		{
			name: "re-enqueued after it was delivered",
			before: func(t *testing.T, ob *Outbox, pub *testPub, e Entry) {
				enqueue(t, ob, e)
				flush(t, ob, pub)
				if ob.Depth() != 0 {
					t.Fatalf("first copy not delivered")
				}
			},
			copies:        1,
			wantPublishes: 2,
		},
		{
			name: "first publish reached the broker but its ack was lost",
			before: func(t *testing.T, ob *Outbox, pub *testPub, e Entry) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := pub.Publish(ctx, e.Subject, e.MsgID, e.Data); err != nil {
					t.Fatal(err)
				}
			},
			copies:        1,
			wantPublishes: 2,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := brokertest.Start(t)
			pub, _ := newTestPub(t, srv)
			ob := open(t, t.TempDir(), Options{})
			e := testEntry(wire.SubjectResults("req-dup", "pc-1"), "rid-dup", 7)
			if tc.before != nil {
				tc.before(t, ob, pub, e)
			}
			for range tc.copies {
				enqueue(t, ob, e)
			}
			flush(t, ob, pub)
			if ob.Depth() != 0 {
				t.Fatalf("Depth = %d after flush, want 0", ob.Depth())
			}
			if got := pub.publishes.Load(); got != int64(tc.wantPublishes) {
				t.Errorf("publishes = %d, want %d", got, tc.wantPublishes)
			}
			msgs := streamMsgs(t, srv.JetStream(t), wire.StreamResults)
			if len(msgs) != 1 {
				t.Fatalf("RESULTS holds %d messages, want 1 (deduplicated by %s)", len(msgs), wire.HeaderMsgID)
			}
			if got := msgs[0].Header.Get(wire.HeaderMsgID); got != e.MsgID {
				t.Errorf("stored message id = %q, want %q", got, e.MsgID)
			}
		})
	}
}

func flush(t *testing.T, ob *Outbox, pub Publisher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ob.Flush(ctx, pub)
}

// waitDisconnected stops srv and waits until nc noticed.
func stopBroker(t *testing.T, srv *brokertest.Server, nc *nats.Conn) {
	t.Helper()
	srv.Stop()
	waitFor(t, 10*time.Second, "the client to notice the broker is down", func() bool { return !nc.IsConnected() })
}

func restartBroker(t *testing.T, srv *brokertest.Server, nc *nats.Conn) {
	t.Helper()
	srv.Restart()
	waitFor(t, 10*time.Second, "the client to reconnect", nc.IsConnected)
}

func TestBrokerDownEntriesStayThenDeliveredAfterRestart(t *testing.T) {
	t.Parallel()
	srv := brokertest.Start(t)
	pub, nc := newTestPub(t, srv)
	dir := t.TempDir()
	ob := open(t, dir, Options{BaseBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	run(t, ob, pub)
	stopBroker(t, srv, nc)

	const n = 5
	for i := range n {
		e := testEntry(wire.SubjectResults("req-down", "pc-1"), fmt.Sprintf("rid-down-%d", i), i)
		if i == 0 {
			e.Attachments = []Attachment{{Bucket: wire.ObjectResultOutput, Key: "rid-down-0.stdout", Content: []byte("output")}}
		}
		enqueue(t, ob, e)
	}
	// Twice as many failed attempts as a rejected file is allowed before
	// it is moved to stuck/ (each Wake forces a pass): an outage is
	// nobody's file's fault.
	waitFor(t, 15*time.Second, "repeated failed attempts", func() bool {
		ob.Wake()
		return pub.failures.Load()+pub.uploads.Load() >= 20
	})
	if got := ob.Depth(); got != n {
		t.Fatalf("Depth while the broker is down = %d, want %d", got, n)
	}
	if files := entryFiles(t, dir); len(files) != n {
		t.Fatalf("entry files while the broker is down = %v, want %d", files, n)
	}
	if stuck := dirNames(t, filepath.Join(dir, "stuck")); len(stuck) != 0 {
		t.Fatalf("entries moved to stuck/ because the broker was down: %v", stuck)
	}

	restartBroker(t, srv, nc)
	ob.Wake()
	waitFor(t, 15*time.Second, "delivery after the restart", func() bool { return ob.Depth() == 0 })
	msgs := streamMsgs(t, srv.JetStream(t), wire.StreamResults)
	if len(msgs) != n {
		t.Fatalf("RESULTS holds %d messages after the restart, want %d", len(msgs), n)
	}
	if ev := pub.Events(); len(ev) == 0 || ev[0] != "upload "+wire.ObjectResultOutput+"/rid-down-0.stdout" {
		t.Errorf("calls after the restart = %v, want the attachment uploaded first", ev)
	}
	for i, m := range msgs {
		if got, want := m.Header.Get(wire.HeaderMsgID), fmt.Sprintf("rid-down-%d", i); got != want {
			t.Errorf("message %d id = %q, want %q", i, got, want)
		}
	}
	if stuck := dirNames(t, filepath.Join(dir, "stuck")); len(stuck) != 0 {
		t.Errorf("stuck/ = %v, want empty", stuck)
	}
}

// A reconnect whose Wake is lost (or a Publisher nobody wakes for) must not
// park the queue: the drain retries on its own backoff.
func TestDrainResumesAfterOutageWithoutWake(t *testing.T) {
	t.Parallel()
	srv := brokertest.Start(t)
	pub, nc := newTestPub(t, srv)
	ob := open(t, t.TempDir(), Options{BaseBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	run(t, ob, pub)
	stopBroker(t, srv, nc)
	enqueue(t, ob, testEntry(wire.SubjectResults("req-nowake", "pc-1"), "rid-nowake", 0))
	waitFor(t, 10*time.Second, "failed attempts", func() bool { return pub.failures.Load() >= 3 })
	restartBroker(t, srv, nc)
	waitFor(t, 10*time.Second, "delivery with no Wake", func() bool { return ob.Depth() == 0 })
	if msgs := streamMsgs(t, srv.JetStream(t), wire.StreamResults); len(msgs) != 1 {
		t.Fatalf("RESULTS holds %d messages, want 1", len(msgs))
	}
}

func TestWakeAfterRestartCutsTheBackoffShort(t *testing.T) {
	t.Parallel()
	srv := brokertest.Start(t)
	pub, nc := newTestPub(t, srv)
	// An hour of backoff: only Wake can bring the retry forward.
	ob := open(t, t.TempDir(), Options{BaseBackoff: time.Hour, MaxBackoff: time.Hour})
	run(t, ob, pub)
	stopBroker(t, srv, nc)
	enqueue(t, ob, testEntry(wire.SubjectResults("req-wake", "pc-1"), "rid-wake", 0))
	waitFor(t, 10*time.Second, "a failed publish", func() bool { return pub.failures.Load() >= 1 })

	restartBroker(t, srv, nc)
	if ob.Depth() != 1 {
		t.Fatalf("Depth = %d before Wake, want 1", ob.Depth())
	}
	ob.Wake()
	waitFor(t, 10*time.Second, "delivery after Wake", func() bool { return ob.Depth() == 0 })
	if msgs := streamMsgs(t, srv.JetStream(t), wire.StreamResults); len(msgs) != 1 {
		t.Fatalf("RESULTS holds %d messages, want 1", len(msgs))
	}
}

var failuresAttr = regexp.MustCompile(`failures=(\d+)`)

func TestRejectedEntryMovesToStuckWhileOthersDrain(t *testing.T) {
	t.Parallel()
	srv := brokertest.Start(t)
	pub, _ := newTestPub(t, srv)
	dir := t.TempDir()

	// A corrupt file from an earlier process, in the oldest position.
	const corruptName = "00000000000000000000_bad.json"
	if err := os.WriteFile(filepath.Join(dir, corruptName), []byte(`{"subject": "results.x", "data": `), 0o600); err != nil {
		t.Fatal(err)
	}

	var logs logtest.Buffer
	ob := open(t, dir, Options{
		BaseBackoff: time.Millisecond,
		MaxBackoff:  5 * time.Millisecond,
		Logger:      slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if ob.Depth() != 1 {
		t.Fatalf("Depth = %d after Open, want 1 (the corrupt file)", ob.Depth())
	}
	bad := Entry{Subject: wire.SubjectResults("req-bad", "pc-1"), MsgID: "rid-bad", Data: oversized(), Kind: "result", Ref: "req-bad"}
	enqueue(t, ob, bad)
	const n = 100
	for i := range n {
		enqueue(t, ob, testEntry(wire.SubjectResults(fmt.Sprintf("req-%03d", i), "pc-1"), fmt.Sprintf("rid-%03d", i), i))
	}
	run(t, ob, pub)
	waitFor(t, 30*time.Second, "the outbox to empty", func() bool { return ob.Depth() == 0 })

	// The 100 good entries were all delivered, in order.
	msgs := streamMsgs(t, srv.JetStream(t), wire.StreamResults)
	if len(msgs) != n {
		t.Fatalf("RESULTS holds %d messages, want %d", len(msgs), n)
	}
	for i, m := range msgs {
		if got, want := m.Header.Get(wire.HeaderMsgID), fmt.Sprintf("rid-%03d", i); got != want {
			t.Errorf("message %d id = %q, want %q", i, got, want)
		}
	}

	// The rejected entry was tried exactly StuckAfter times, then moved.
	tries, lastErr := pub.Tries(bad.MsgID)
	if tries != 10 {
		t.Errorf("rejected entry tried %d times, want 10", tries)
	}
	if !errors.Is(lastErr, nats.ErrMaxPayload) {
		t.Errorf("rejected entry's last error = %v, want the broker's max_payload refusal", lastErr)
	}
	stuck := dirNames(t, filepath.Join(dir, "stuck"))
	if len(stuck) != 1 || !strings.HasSuffix(stuck[0], "_rid-bad.json") {
		t.Fatalf("stuck/ = %v, want the rejected entry", stuck)
	}
	if e, err := readEntry(filepath.Join(dir, "stuck", stuck[0])); err != nil || e.MsgID != bad.MsgID {
		t.Errorf("stuck entry = %+v, %v; want it intact", e.MsgID, err)
	}
	if corrupt := dirNames(t, filepath.Join(dir, "corrupt")); !slices.Equal(corrupt, []string{corruptName}) {
		t.Errorf("corrupt/ = %v, want [%s]", corrupt, corruptName)
	}
	if files := entryFiles(t, dir); len(files) != 0 {
		t.Errorf("files left in the queue: %v", files)
	}

	// Warnings from the 5th failure (5..9), then an error at the 10th.
	var warnAt []string
	var stuckLogged bool
	for line := range strings.Lines(logs.String()) {
		if !strings.Contains(line, "rid-bad") {
			continue
		}
		m := failuresAttr.FindStringSubmatch(line)
		switch {
		case strings.Contains(line, "level=WARN"):
			if m == nil {
				t.Errorf("warning without a failure count: %s", line)
				continue
			}
			warnAt = append(warnAt, m[1])
		case strings.Contains(line, "level=ERROR") && strings.Contains(line, "stuck"):
			stuckLogged = true
			if m == nil || m[1] != "10" {
				t.Errorf("stuck error logged at %v failures, want 10: %s", m, line)
			}
		}
	}
	if want := []string{"5", "6", "7", "8", "9"}; !slices.Equal(warnAt, want) {
		t.Errorf("warnings at failures %v, want %v", warnAt, want)
	}
	if !stuckLogged {
		t.Errorf("no error logged when the entry moved to stuck/; logs:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), corruptName) {
		t.Errorf("moving the corrupt file was not logged")
	}
}

func TestNoStreamSubjectIsARejectionNotAnOutage(t *testing.T) {
	t.Parallel()
	srv := brokertest.Start(t)
	pub, _ := newTestPub(t, srv)
	dir := t.TempDir()
	ob := open(t, dir, Options{BaseBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, StuckAfter: 2})
	// No stream captures this subject: JetStream answers "no responders".
	enqueue(t, ob, Entry{Subject: "nostream.kanade.test", MsgID: "rid-nostream", Data: json.RawMessage(`{}`)})
	enqueue(t, ob, testEntry(wire.SubjectResults("req-ok", "pc-1"), "rid-ok", 0))
	run(t, ob, pub)
	waitFor(t, 20*time.Second, "the outbox to empty", func() bool { return ob.Depth() == 0 })

	if tries, lastErr := pub.Tries("rid-nostream"); tries != 2 || !errors.Is(lastErr, jetstream.ErrNoStreamResponse) {
		t.Errorf("unroutable entry: %d tries, last error %v; want 2 tries ending in %v", tries, lastErr, jetstream.ErrNoStreamResponse)
	}
	if stuck := dirNames(t, filepath.Join(dir, "stuck")); len(stuck) != 1 || !strings.HasSuffix(stuck[0], "_rid-nostream.json") {
		t.Errorf("stuck/ = %v, want the unroutable entry", stuck)
	}
	if msgs := streamMsgs(t, srv.JetStream(t), wire.StreamResults); len(msgs) != 1 || msgs[0].Header.Get(wire.HeaderMsgID) != "rid-ok" {
		t.Errorf("RESULTS = %d messages, want the one good entry", len(msgs))
	}
}

func TestAttachmentUploadedBeforeMessageAndRemovedAfter(t *testing.T) {
	t.Parallel()
	srv := brokertest.Start(t)
	pub, _ := newTestPub(t, srv)
	dir := t.TempDir()
	ob := open(t, dir, Options{})

	content := make([]byte, 1<<20)
	if _, err := rand.Read(content); err != nil {
		t.Fatal(err)
	}
	stderr := []byte("a smaller second attachment")
	e := testEntry(wire.SubjectResults("req-att", "pc-1"), "rid-att", 0)
	e.Attachments = []Attachment{
		{Bucket: wire.ObjectResultOutput, Key: "rid-att.stdout", Content: content},
		{Bucket: wire.ObjectResultOutput, Key: "rid-att.stderr", Content: stderr},
	}
	enqueue(t, ob, e)

	// The attachments are on disk beside the entry, not inside it.
	var attFiles []string
	for _, n := range dirNames(t, dir) {
		if strings.Contains(n, ".att") {
			attFiles = append(attFiles, n)
		}
	}
	if len(attFiles) != 2 {
		t.Fatalf("attachment files = %v, want 2", attFiles)
	}
	if b, err := os.ReadFile(filepath.Join(dir, entryFiles(t, dir)[0])); err != nil || len(b) > 4096 {
		t.Fatalf("entry file is %d bytes (%v): attachment content must not be inlined", len(b), err)
	}

	flush(t, ob, pub)
	if ob.Depth() != 0 {
		t.Fatalf("Depth = %d after flush, want 0", ob.Depth())
	}
	want := []string{
		"upload " + wire.ObjectResultOutput + "/rid-att.stdout",
		"upload " + wire.ObjectResultOutput + "/rid-att.stderr",
		"publish rid-att",
	}
	if got := pub.Events(); !slices.Equal(got, want) {
		t.Errorf("calls = %v, want %v (uploads before the message)", got, want)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	obs, err := srv.JetStream(t).ObjectStore(ctx, wire.ObjectResultOutput)
	if err != nil {
		t.Fatal(err)
	}
	for key, wantBytes := range map[string][]byte{"rid-att.stdout": content, "rid-att.stderr": stderr} {
		got, err := obs.GetBytes(ctx, key)
		if err != nil {
			t.Fatalf("object %s: %v", key, err)
		}
		if !bytes.Equal(got, wantBytes) {
			t.Errorf("object %s holds %d bytes, want the %d enqueued", key, len(got), len(wantBytes))
		}
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"corrupt", "stuck"}) {
		t.Errorf("outbox dir after delivery = %v, want only the sub-directories", names)
	}
}

func TestOpenRecoversInterruptedEnqueue(t *testing.T) {
	t.Parallel()
	const name = "00000000000000000007_rid-crash.json"
	complete := func(atts ...Attachment) []byte {
		e := testEntry(wire.SubjectResults("req-crash", "pc-1"), "rid-crash", 0)
		e.Attachments = atts
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	att0 := Attachment{Bucket: wire.ObjectResultOutput, Key: "rid-crash.stdout", File: "00000000000000000007_rid-crash.att0"}
	att1 := Attachment{Bucket: wire.ObjectResultOutput, Key: "rid-crash.stderr", File: "00000000000000000007_rid-crash.att1"}
	tests := []struct {
		name       string
		tmp        []byte
		attFiles   []string // attachment files on disk
		wantCommit bool
	}{
		{name: "complete temp entry", tmp: complete(), wantCommit: true},
		{name: "complete temp entry with its attachments", tmp: complete(att0, att1), attFiles: []string{att0.File, att1.File}, wantCommit: true},
		{name: "truncated temp entry", tmp: complete()[:len(complete())/2], attFiles: []string{att0.File}},
		{name: "empty temp entry", tmp: []byte{}},
		{name: "invalid temp entry", tmp: []byte("not json at all")},
		{name: "decodes but has no subject", tmp: []byte(`{"msg_id":"rid-crash","data":{}}`)},
		{name: "an attachment file missing", tmp: complete(att0, att1), attFiles: []string{att1.File}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, tmpPrefix+name), tc.tmp, 0o600); err != nil {
				t.Fatal(err)
			}
			for _, f := range tc.attFiles {
				if err := os.WriteFile(filepath.Join(dir, f), []byte("output"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			ob := open(t, dir, Options{})
			if _, err := os.Stat(filepath.Join(dir, tmpPrefix+name)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("temp file still there after Open (stat err %v)", err)
			}
			_, err := os.Stat(filepath.Join(dir, name))
			committed := err == nil
			if committed != tc.wantCommit {
				t.Fatalf("committed = %v, want %v", committed, tc.wantCommit)
			}
			wantDepth := 0
			if tc.wantCommit {
				wantDepth = 1
			}
			if ob.Depth() != wantDepth || ob.Has("rid-crash") != tc.wantCommit {
				t.Errorf("Depth = %d, Has = %v; want %d, %v", ob.Depth(), ob.Has("rid-crash"), wantDepth, tc.wantCommit)
			}
			// A committed entry keeps its attachments; those of an
			// entry that was not committed are removed.
			var atts []string
			for _, n := range dirNames(t, dir) {
				if strings.Contains(n, ".att") {
					atts = append(atts, n)
				}
			}
			if want := tc.attFiles; !tc.wantCommit && len(atts) != 0 || tc.wantCommit && !slices.Equal(atts, want) {
				t.Errorf("attachment files after Open = %v (committed %v, present before %v)", atts, tc.wantCommit, want)
			}
			if tc.wantCommit {
				// New entries sort after the recovered one.
				enqueue(t, ob, testEntry(wire.SubjectResults("req-next", "pc-1"), "rid-next", 1))
				files := entryFiles(t, dir)
				if !slices.Equal(files, []string{name, "00000000000000000008_rid-next.json"}) {
					t.Errorf("entries after recovery = %v, want the recovered one then sequence 8", files)
				}
			}
		})
	}
}

func TestBestEffortEntryIsWritten(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ob := open(t, dir, Options{})
	e := Entry{
		Subject: "events.started.exec-1.pc-1", MsgID: "started-rid-1", Kind: "started", BestEffort: true,
		Data:        json.RawMessage(`{"result_id":"rid-1"}`),
		Attachments: []Attachment{{Bucket: wire.ObjectResultOutput, Key: "k", Content: []byte("best effort bytes")}},
	}
	enqueue(t, ob, e)
	files := entryFiles(t, dir)
	if len(files) != 1 {
		t.Fatalf("entry files = %v, want 1", files)
	}
	got, err := readEntry(filepath.Join(dir, files[0]))
	if err != nil {
		t.Fatal(err)
	}
	if got.Subject != e.Subject || got.MsgID != e.MsgID || got.Kind != e.Kind || !bytes.Equal(got.Data, e.Data) {
		t.Errorf("entry on disk = %+v, want %+v", got, e)
	}
	if len(got.Attachments) != 1 {
		t.Fatalf("attachments on disk = %+v", got.Attachments)
	}
	if b, err := os.ReadFile(filepath.Join(dir, got.Attachments[0].File)); err != nil || string(b) != "best effort bytes" {
		t.Errorf("attachment file = %q, %v", b, err)
	}
	if re := open(t, dir, Options{}); re.Depth() != 1 {
		t.Errorf("reopened Depth = %d, want 1", re.Depth())
	}
}

var safeChars = regexp.MustCompile(`^[A-Za-z0-9_~-]*$`)

func checkSafeName(t *testing.T, id string) string {
	t.Helper()
	got := SafeName(id)
	if !safeChars.MatchString(got) {
		t.Errorf("SafeName(%q) = %q: characters outside [A-Za-z0-9_~-]", id, got)
	}
	if strings.ContainsAny(got, `/\.:`) || strings.Contains(got, "..") {
		t.Errorf("SafeName(%q) = %q: contains a path element", id, got)
	}
	if len(got) > 128 {
		t.Errorf("SafeName(%q) is %d bytes long, want at most 128", id, len(got))
	}
	// Used as Enqueue uses it, it always names a file directly in the dir.
	dir := filepath.Join("base", "outbox")
	for _, name := range []string{fmt.Sprintf("%020d_%s.json", 1, got), tmpPrefix + fmt.Sprintf("%020d_%s.json", 1, got), fmt.Sprintf("%020d_%s.att0", 1, got)} {
		if p := filepath.Join(dir, name); filepath.Dir(p) != dir {
			t.Errorf("SafeName(%q) escapes the outbox: %s", id, p)
		}
	}
	return got
}

func TestSafeName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, id string
		want     string // "" = only check the properties
	}{
		{name: "plain id unchanged", id: "abc-DEF_0123", want: "abc-DEF_0123"},
		{name: "nuid unchanged", id: "Zx9kQ2mP4rT6vW8yB1cD3f", want: "Zx9kQ2mP4rT6vW8yB1cD3f"},
		{name: "dot dot", id: ".."},
		{name: "path traversal", id: "../../etc/passwd"},
		{name: "both separators", id: `a/b\c`},
		{name: "windows path", id: `C:\Windows\System32`},
		{name: "windows device", id: "NUL"},
		{name: "nul byte", id: "a\x00b"},
		{name: "invalid utf-8", id: "\xff\xfe/\xc0"},
		{name: "japanese", id: "結果-ユニコード"},
		{name: "emoji", id: "🎉/🎉"},
		{name: "tilde", id: "~/x"},
		{name: "empty", id: ""},
		{name: "very long", id: strings.Repeat("a", 10_000)},
		{name: "very long separators", id: strings.Repeat("../", 5_000)},
		{name: "very long unicode", id: strings.Repeat("界", 5_000)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := checkSafeName(t, tc.id)
			if tc.want != "" && got != tc.want {
				t.Errorf("SafeName(%q) = %q, want %q", tc.id, got, tc.want)
			}
			if again := SafeName(tc.id); again != got {
				t.Errorf("SafeName is not deterministic: %q then %q", got, again)
			}
		})
	}
}

// Has finds entries by SafeName, so two different ids must never share one.
func TestSafeNameDistinguishesIDs(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 300)
	pairs := [][2]string{
		{"a/b", "a~2fb"},
		{"\x01a", "\x1a"},
		{"\xff", "\xfe"},
		{"\xff", "\ufffd"},
		{long + "1", long + "2"},
		{strings.Repeat("界", 100) + "a", strings.Repeat("界", 100) + "b"},
		{"a.b", "a:b"},
	}
	for _, p := range pairs {
		if SafeName(p[0]) == SafeName(p[1]) {
			t.Errorf("SafeName(%q) == SafeName(%q) == %q", p[0], p[1], SafeName(p[0]))
		}
	}
}

func FuzzSafeName(f *testing.F) {
	for _, s := range []string{"", "abc", "../../etc/passwd", `a/b\c`, "結果", "\xff\xfe", "~", "\x01a", strings.Repeat("é", 200)} {
		f.Add(s, "\x1a")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		sa := SafeName(a)
		if !safeChars.MatchString(sa) {
			t.Fatalf("SafeName(%q) = %q: characters outside [A-Za-z0-9_~-]", a, sa)
		}
		if strings.ContainsAny(sa, `/\`) || strings.Contains(sa, "..") {
			t.Fatalf("SafeName(%q) = %q: contains a path element", a, sa)
		}
		if len(sa) > 128 {
			t.Fatalf("SafeName(%q) is %d bytes long", a, len(sa))
		}
		if a != b && sa == SafeName(b) {
			t.Fatalf("SafeName(%q) == SafeName(%q) == %q", a, b, sa)
		}
	})
}

func TestHasWhilePendingNotAfterDelivery(t *testing.T) {
	t.Parallel()
	srv := brokertest.Start(t)
	pub, _ := newTestPub(t, srv)
	ob := open(t, t.TempDir(), Options{})
	enqueue(t, ob, testEntry(wire.SubjectResults("r", "pc-1"), "rid-has", 0))
	enqueue(t, ob, testEntry(wire.SubjectResults("r", "pc-1"), "pc_1_x", 1))
	for id, want := range map[string]bool{
		"rid-has": true, "pc_1_x": true,
		"rid-other": false, "has": false, "x": false, "1_x": false, "": false,
	} {
		if got := ob.Has(id); got != want {
			t.Errorf("while pending Has(%q) = %v, want %v", id, got, want)
		}
	}
	flush(t, ob, pub)
	if ob.Depth() != 0 {
		t.Fatalf("Depth = %d after flush", ob.Depth())
	}
	for _, id := range []string{"rid-has", "pc_1_x"} {
		if ob.Has(id) {
			t.Errorf("after delivery Has(%q) = true", id)
		}
	}
}

func TestRunSleepsWhenThereIsNothingToDo(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		entry *Entry // queued before Run; nil = empty outbox
		// before is how many Publish calls happen before the drain settles.
		before int64
	}{
		{name: "empty outbox", before: 0},
		{
			// A rejected entry waiting for its (hour-long) backoff must not
			// be retried early, nor spin the loop.
			name:   "one entry backing off",
			entry:  &Entry{Subject: wire.SubjectResults("r", "pc-1"), MsgID: "rid-big", Data: oversized()},
			before: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := brokertest.Start(t)
			pub, _ := newTestPub(t, srv)
			ob := open(t, t.TempDir(), Options{BaseBackoff: time.Hour, MaxBackoff: time.Hour})
			if tc.entry != nil {
				enqueue(t, ob, *tc.entry)
			}
			run(t, ob, pub)
			waitFor(t, 10*time.Second, "the first pass", func() bool { return pub.publishes.Load() == tc.before })

			// Observe a quiet window: not one call.
			<-time.After(200 * time.Millisecond)
			if got := pub.publishes.Load(); got != tc.before {
				t.Errorf("Publish called %d times in 200 ms of nothing to do", got-tc.before)
			}
			if got := pub.uploads.Load(); got != 0 {
				t.Errorf("Upload called %d times, want 0", got)
			}

			// Asleep, not dead: a new entry goes out at once.
			enqueue(t, ob, testEntry(wire.SubjectResults("r", "pc-1"), "rid-after", 0))
			waitFor(t, 10*time.Second, "the new entry to go out", func() bool { return !ob.Has("rid-after") })
		})
	}
}

func TestRetryNowIgnoresBackoffButKeepsFailureCount(t *testing.T) {
	t.Parallel()
	srv := brokertest.Start(t)
	pub, _ := newTestPub(t, srv)
	dir := t.TempDir()
	ob := open(t, dir, Options{BaseBackoff: time.Hour, MaxBackoff: time.Hour, StuckAfter: 3})
	enqueue(t, ob, Entry{Subject: wire.SubjectResults("r", "pc-1"), MsgID: "rid-big", Data: oversized()})
	run(t, ob, pub)
	tries := func() int { n, _ := pub.Tries("rid-big"); return n }
	waitFor(t, 10*time.Second, "the first attempt", func() bool { return tries() == 1 })
	// Wake only runs what is due: the entry waits out its hour.
	ob.Wake()
	enqueue(t, ob, testEntry(wire.SubjectResults("r", "pc-1"), "rid-small", 0))
	waitFor(t, 10*time.Second, "the new entry to go out", func() bool { return !ob.Has("rid-small") })
	if n := tries(); n != 1 {
		t.Fatalf("attempts after Wake = %d, want 1 (still backing off)", n)
	}
	ob.RetryNow()
	waitFor(t, 10*time.Second, "the retry", func() bool { return tries() == 2 })
	if ob.Depth() != 1 {
		t.Fatalf("Depth = %d after the 2nd failure, want 1", ob.Depth())
	}
	// RetryNow does not forgive failures: the 3rd one still moves it.
	ob.RetryNow()
	waitFor(t, 10*time.Second, "the move to stuck/", func() bool { return ob.Depth() == 0 })
	if n := tries(); n != 3 {
		t.Errorf("attempts = %d, want 3", n)
	}
	if stuck := dirNames(t, filepath.Join(dir, "stuck")); len(stuck) != 1 {
		t.Errorf("stuck/ = %v, want the entry", stuck)
	}
}

// pendingState returns a copy of the state of the pending entry whose file
// name ends in "_"+SafeName(msgID)+".json".
func pendingState(t *testing.T, ob *Outbox, msgID string) (string, fileState) {
	t.Helper()
	ob.mu.Lock()
	defer ob.mu.Unlock()
	for name, st := range ob.pending {
		if strings.HasSuffix(name, "_"+SafeName(msgID)+entrySuffix) {
			return name, *st
		}
	}
	t.Fatalf("no pending entry for %q", msgID)
	return "", fileState{}
}

// TestMemoryCopyIsTheFileDecoded: what the drain sends from memory is
// exactly what it would read from the file — also for data encoding/json
// rewrites (whitespace, HTML characters, U+2028) — and an entry whose file
// would decode differently (invalid UTF-8) or not at all is read from its
// file, as every entry was before.
func TestMemoryCopyIsTheFileDecoded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ob := open(t, dir, Options{})
	cases := []struct {
		e      Entry
		inMem  bool
		reason string
	}{
		{testEntry(wire.SubjectResults("r1", "pc-1"), "rid-plain", 1), true, "plain"},
		{Entry{Subject: wire.SubjectResults("r2", "pc-1"), MsgID: "rid-rewritten", Kind: "result", Ref: "r2",
			Data: json.RawMessage("{ \"stdout\" : \"a < b && c > d \u2028 ok\",\n\t\"n\": [1, 2] }")}, true, "data rewritten by the encoder"},
		{Entry{Subject: "obs.東京", MsgID: "obs-東京-1", Kind: "obs", Data: json.RawMessage(`{"pc_id":"東京"}`)}, true, "unicode"},
		{Entry{Subject: wire.SubjectResults("r3", "pc-1"), MsgID: "rid-att", Data: json.RawMessage(`{"stdout_object":"k"}`),
			Attachments: []Attachment{{Bucket: "result_output", Key: "k", Content: []byte("big output")}}}, true, "attachment"},
		{Entry{Subject: "events.started.e.pc", MsgID: "started-rid", Data: json.RawMessage(`{}`), BestEffort: true, Attachments: []Attachment{}}, true, "best effort"},
		{Entry{Subject: wire.SubjectResults("r4", "pc-1"), MsgID: "rid-bad-\xff", Ref: "r4\xfe", Data: json.RawMessage(`{}`)}, false, "invalid UTF-8 in an id"},
		{Entry{Subject: "", MsgID: "rid-nosubject", Data: json.RawMessage(`{}`)}, false, "refused by readEntry"},
	}
	for _, tc := range cases {
		enqueue(t, ob, tc.e)
		name, st := pendingState(t, ob, tc.e.MsgID)
		if (st.mem != nil) != tc.inMem {
			t.Errorf("%s: in memory = %v, want %v", tc.reason, st.mem != nil, tc.inMem)
			continue
		}
		fromFile, ferr := readEntry(filepath.Join(dir, name))
		got, err := ob.entry(name)
		if (err == nil) != (ferr == nil) || !reflect.DeepEqual(got, fromFile) {
			t.Errorf("%s: drain sees %+v (%v), the file decodes to %+v (%v)", tc.reason, got, err, fromFile, ferr)
		}
	}
}

// TestDrainDeliversEntriesFromDiskAndMemory: entries left on disk by an
// earlier process (which crashed: never closed, never drained) are read
// from their files; entries this process enqueues are sent from memory up
// to MemoryBytes, the rest from their files. All are delivered oldest
// first, exactly once, with the bytes their files hold, and then removed.
func TestDrainDeliversEntriesFromDiskAndMemory(t *testing.T) {
	t.Parallel()
	srv := brokertest.Start(t)
	pub, _ := newTestPub(t, srv)
	dir := t.TempDir()
	entry := func(id string) Entry {
		return Entry{Subject: wire.SubjectResults("req-"+id, "pc-1"), MsgID: "rid-" + id, Kind: "result", Ref: "req-" + id,
			Data: json.RawMessage(fmt.Sprintf("{ \"result_id\": %q, \"stdout\": \"<%s>\" }", "rid-"+id, id))}
	}
	earlier := open(t, dir, Options{})
	for _, id := range []string{"old-1", "old-2", "old-3"} {
		enqueue(t, earlier, entry(id))
	}

	// Room for two of the new entries (all of one size) in memory.
	sized := entry("new-1")
	sized.Data, _ = json.Marshal(sized.Data)
	size, ok := memSize(sized)
	if !ok {
		t.Fatal("a plain entry cannot be kept in memory")
	}
	var sentMu sync.Mutex
	var sent []Entry
	ob := open(t, dir, Options{MemoryBytes: 2 * size, OnSent: func(e Entry) error {
		sentMu.Lock()
		defer sentMu.Unlock()
		sent = append(sent, e)
		return nil
	}})
	if ob.Depth() != 3 {
		t.Fatalf("Depth after Open = %d, want the 3 entries found on disk", ob.Depth())
	}
	ids := []string{"old-1", "old-2", "old-3", "new-1", "new-2", "new-3", "new-4"}
	for _, id := range ids[3:] {
		enqueue(t, ob, entry(id))
	}
	wantInMem := map[string]bool{"new-1": true, "new-2": true}
	fromFile := map[string]Entry{}
	for _, id := range ids {
		name, st := pendingState(t, ob, "rid-"+id)
		if (st.mem != nil) != wantInMem[id] {
			t.Errorf("%s in memory = %v, want %v", id, st.mem != nil, wantInMem[id])
		}
		e, err := readEntry(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		fromFile["rid-"+id] = e
	}

	run(t, ob, pub)
	waitFor(t, 20*time.Second, "the outbox to empty", func() bool { return ob.Depth() == 0 })
	msgs := streamMsgs(t, srv.JetStream(t), wire.StreamResults)
	if len(msgs) != len(ids) {
		t.Fatalf("RESULTS holds %d messages, want %d", len(msgs), len(ids))
	}
	for i, m := range msgs {
		id := m.Header.Get(wire.HeaderMsgID)
		if want := "rid-" + ids[i]; id != want {
			t.Errorf("message %d has id %q, want %q (oldest first)", i, id, want)
		}
		if !bytes.Equal(m.Data, fromFile[id].Data) {
			t.Errorf("message %s = %s, its file held %s", id, m.Data, fromFile[id].Data)
		}
	}
	sentMu.Lock()
	for _, e := range sent {
		if !reflect.DeepEqual(e, fromFile[e.MsgID]) {
			t.Errorf("OnSent got %+v, the file held %+v", e, fromFile[e.MsgID])
		}
	}
	sentMu.Unlock()
	if files := entryFiles(t, dir); len(files) != 0 {
		t.Errorf("files left after delivery: %v", files)
	}
	ob.mu.Lock()
	if ob.memBytes != 0 {
		t.Errorf("memBytes = %d after the queue emptied, want 0", ob.memBytes)
	}
	ob.mu.Unlock()
}
