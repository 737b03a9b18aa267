package agent

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/kanade-project/kanade/internal/wire"
)

// FuzzDecodeCommand feeds the agent's command validation arbitrary bytes,
// as a publisher on commands.* could. Whatever it accepts is safe to act
// on: the ids are subject tokens (they become subjects, KV keys and, through
// the ledger and outbox, file names), the script is not blank, the shell is
// one the runner knows, nothing is negative; and the accepted command
// survives the ledger's re-encoding unchanged, so a replay after a crash
// runs exactly what was admitted. Whatever it refuses comes with a message
// for the stderr of the error result, and the request_id the refusal is
// answered on is itself a valid token or nothing.
func FuzzDecodeCommand(f *testing.F) {
	for _, s := range []string{
		`{"id":"adhoc-run","request_id":"r1","exec_id":"e1","script":"echo hi"}`,
		`{"request_id":"r1","script":"echo hi","shell":"pwsh","staleness":{"mode":"strict","max_cache_age":"10m"}}`,
		`{"request_id":"r1","job_id":"legacy","script":"x","retry":{"max":2,"backoff_secs":5}}`,
		`{"request_id":"r1","exec_id":"e1"}`,
		`{"request_id":"r1","exec_id":"e1","script":" \t\r\n"}`,
		`{"request_id":"../../x","script":"echo"}`,
		`{"request_id":"r1","exec_id":"a.b","script":"echo"}`,
		`{"request_id":"r1","script":"echo","shell":"fish"}`,
		`{"request_id":"r1","script":"echo","timeout_secs":-1}`,
		`{"request_id":"r1","script":"echo","staleness":{"mode":"strict"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := decodeCommand(body)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("refused %q with an empty message", body)
			}
			if rid := recoverRequestID(body); rid != "" && !wire.ValidToken(rid) {
				t.Fatalf("refusal of %q would be answered on request_id %q, not a subject token", body, rid)
			}
			return
		}
		checkAccepted(t, body, c)
		// The ledger stores the command re-encoded; a crash recovery
		// decodes that copy and must find the same command.
		again, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("accepted %q but cannot re-encode it: %v", body, err)
		}
		c2, err := decodeCommand(again)
		if err != nil {
			t.Fatalf("accepted %q, refused its re-encoding %s: %v", body, again, err)
		}
		if !sameCommand(c, c2) {
			t.Fatalf("re-encoding changed the command\ninput: %q\nfirst:  %#v\nsecond: %#v", body, c, c2)
		}
	})
}

func checkAccepted(t *testing.T, body []byte, c wire.Command) {
	t.Helper()
	fail := func(what string) { t.Fatalf("accepted %q with %s: %#v", body, what, c) }
	if !wire.ValidToken(c.RequestID) || !wire.ValidToken(c.ExecID) {
		fail("an id that is not a subject token")
	}
	if strings.TrimSpace(c.Script) == "" {
		fail("a blank script")
	}
	if !slices.Contains([]string{"", wire.ShellPowerShell, wire.ShellPwsh, wire.ShellCmd, wire.ShellSh, wire.ShellBash}, c.Shell) {
		fail("an unknown shell")
	}
	if c.TimeoutSecs < 0 || c.JitterSecs < 0 || c.Retry != nil && (c.Retry.Max < 0 || c.Retry.BackoffSecs < 0) {
		fail("a negative number")
	}
	if s := c.Staleness; s != nil {
		if !slices.Contains([]string{"", wire.StalenessCached, wire.StalenessStrict, wire.StalenessUnchecked}, s.Mode) {
			fail("an unknown staleness mode")
		}
		if s.MaxCacheAge < 0 || s.Mode == wire.StalenessStrict && s.MaxCacheAge == 0 {
			fail("an unusable max_cache_age")
		}
	}
	if c.ID == "" {
		fail("no job id")
	}
}

// sameCommand compares two commands, deadlines by instant and offset
// (two decodes of one offset get different *time.Location pointers).
func sameCommand(a, b wire.Command) bool {
	da, db := a.DeadlineAt, b.DeadlineAt
	if (da == nil) != (db == nil) {
		return false
	}
	if da != nil {
		_, oa := da.Zone()
		_, ob := db.Zone()
		if !da.Equal(*db) || oa != ob {
			return false
		}
	}
	a.DeadlineAt, b.DeadlineAt = nil, nil
	return reflect.DeepEqual(a, b)
}
