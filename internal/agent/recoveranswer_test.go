//go:build !windows

package agent_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/agent"
	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/ledger"
	"github.com/kanade-project/kanade/internal/wire"
)

// TestAnswersAfterACrashBetweenAdmissionAndAnswer: a command that is only
// to be answered (invalid, or refused for its signature) is admitted to the
// ledger before its answer is queued. The ledger below is what a crash
// between the two leaves; the restarted agent must still answer each one,
// once, with the right exit code, instead of dropping it.
func TestAnswersAfterACrashBetweenAdmissionAndAnswer(t *testing.T) {
	srv := brokertest.Start(t)
	nc := srv.Connect(t)
	dir := t.TempDir()
	l, err := ledger.Open(filepath.Join(dir, "ledger"))
	if err != nil {
		t.Fatal(err)
	}
	marker, _ := json.Marshal(map[string]string{"refused": "signature", "body_sha256": strings.Repeat("ab", 32)})
	cases := []struct {
		rid, body  string
		exit       int
		skipped    bool
		stderrPart string
	}{
		{"rid-invalid", `{"request_id":"rid-invalid","exec_id":"ex-invalid","script":"  "}`, wire.ExitInvalidCommand, true, "script is empty"},
		{"rid-refused", string(marker), wire.ExitRefusedSignature, false, "signature did not verify"},
	}
	for _, c := range cases {
		if v, _, err := l.Admit(c.rid, "", []byte(c.body), "res-"+c.rid); err != nil || v != ledger.New {
			t.Fatalf("admit %s: %v %v", c.rid, v, err)
		}
	}
	sub, err := nc.SubscribeSync(wire.SubjectResultsWild)
	if err != nil {
		t.Fatal(err)
	}
	startAgentWith(t, agent.Config{ID: "pc-crashed", NATSURLs: []string{srv.URL()}, DataDir: dir})

	got := map[string]wire.ExecResult{}
	for len(got) < len(cases) {
		m, err := sub.NextMsg(30 * time.Second)
		if err != nil {
			t.Fatalf("answers after the restart: got %d of %d: %v", len(got), len(cases), err)
		}
		var r wire.ExecResult
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatal(err)
		}
		if _, dup := got[r.RequestID]; dup {
			t.Fatalf("%s answered twice", r.RequestID)
		}
		got[r.RequestID] = r
	}
	for _, c := range cases {
		r := got[c.rid]
		if r.ResultID != "res-"+c.rid || r.ExitCode != c.exit || r.Skipped != c.skipped || !strings.Contains(r.Stderr, c.stderrPart) || r.PCID != "pc-crashed" {
			t.Errorf("%s: result %+v, want result_id res-%s, exit %d, skipped %v, stderr containing %q", c.rid, r, c.rid, c.exit, c.skipped, c.stderrPart)
		}
	}
}
