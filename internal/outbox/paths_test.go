package outbox

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/wire"
)

// TestAttachmentNamesFromDiskStayInTheOutbox: the drain opens, uploads,
// renames and deletes the attachment files an entry names. An entry file
// whose attachment names anything but a file Enqueue would have made (a
// parent, a path, a Windows drive or stream) is corrupt: it goes to
// corrupt/ without its attachment being touched, and the rest drains.
func TestAttachmentNamesFromDiskStayInTheOutbox(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{
		"..",
		".",
		"../victim.att0",
		`..\victim.att0`,
		"00000000000000000000_x.att0/../../victim.att0",
		`00000000000000000000_x.att0\..\..\victim.att0`,
		"C:victim.att0",
		"00000000000000000000_x.att0:stream",
		"00000000000000000000_x.att0\x00",
		"00000000000000000000_x.att",
		"00000000000000000000_x.json",
		"0000000000000000000a_x.att0",
		"00000000000000000000_" + strings.Repeat("x", 200) + ".att0",
		"NUL",
	} {
		t.Run(bad, func(t *testing.T) {
			t.Parallel()
			srv := brokertest.Start(t)
			pub, _ := newTestPub(t, srv)
			root := t.TempDir()
			dir := filepath.Join(root, "outbox")
			victim := filepath.Join(root, "victim.att0")
			if err := os.WriteFile(victim, []byte("not the outbox's"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			e := testEntry(wire.SubjectResults("req-evil", "pc-evil"), "rid-evil", 0)
			e.Attachments = []Attachment{{Bucket: wire.ObjectResultOutput, Key: "rid-evil.stdout", File: bad}}
			b, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			const name = "00000000000000000000_rid-evil.json"
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
				t.Fatal(err)
			}
			ob := open(t, dir, Options{})
			enqueue(t, ob, testEntry(wire.SubjectResults("req-ok", "pc-ok"), "rid-ok", 1))
			flush(t, ob, pub)

			if corrupt := dirNames(t, filepath.Join(dir, "corrupt")); !slices.Equal(corrupt, []string{name}) {
				t.Errorf("corrupt/ = %v, want [%s]", corrupt, name)
			}
			if got, err := os.ReadFile(victim); err != nil || string(got) != "not the outbox's" {
				t.Errorf("the file outside the outbox was touched: %q, %v", got, err)
			}
			if ev := pub.Events(); !slices.Equal(ev, []string{"publish rid-ok"}) {
				t.Errorf("broker calls %v, want only the good entry published", ev)
			}
		})
	}
}

// TestEnqueuedAttachmentNamesPassTheCheck: every name Enqueue gives an
// attachment, whatever the message id, is one checkEntry accepts, so the
// check can only ever refuse names Enqueue did not write.
func TestEnqueuedAttachmentNamesPassTheCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ob := open(t, dir, Options{})
	for i, id := range []string{"rid", "", "../../x", `C:\x:y`, "\x00", strings.Repeat("界", 300)} {
		e := Entry{Subject: wire.SubjectResults("req", "pc"), MsgID: id, Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}
		e.Attachments = []Attachment{{Bucket: wire.ObjectResultOutput, Key: "k0", Content: []byte("a")}, {Bucket: wire.ObjectResultOutput, Key: "k1", Content: []byte("b")}}
		enqueue(t, ob, e)
	}
	n := 0
	for _, f := range entryFiles(t, dir) {
		e, err := readEntry(filepath.Join(dir, f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, a := range e.Attachments {
			n++
			if !attachmentName(a.File) {
				t.Errorf("Enqueue named an attachment %q, which the drain refuses", a.File)
			}
		}
	}
	if n != 12 {
		t.Fatalf("found %d attachments, want 12", n)
	}
}
