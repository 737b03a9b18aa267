package wire

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// FuzzDecodeCommand feeds arbitrary bytes, as any publisher on commands.*
// could, to the Command decoding and to the agent's validation.
//
// Decoding: whatever decodes re-encodes into bytes that decode to an equal
// Command and re-encode identically; the agent persists and republishes
// commands, so the encoding must be a fixed point.
//
// Validation (DecodeCommand): whatever it accepts is safe to act on: the
// ids are subject tokens (they become subjects, KV keys and, through the
// ledger and outbox, file names), the script is not blank, the shell is one
// the runner knows, nothing is negative; and the accepted command survives
// the ledger's re-encoding unchanged, so a recovery after a crash runs
// exactly what was admitted. Whatever it refuses comes with a message for
// the stderr of the error result, answered on a request_id that is itself
// a valid token or on nothing.
func FuzzDecodeCommand(f *testing.F) {
	golden, err := os.ReadFile(filepath.Join("testdata", "command.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden)
	for _, s := range []string{
		`{"id":"adhoc-run","request_id":"r1","exec_id":"e1","script":"echo hi"}`,
		`{"id":"j","request_id":"r","job_id":"J","script":"x"}`,
		`{"exec_id":"E","job_id":"J"}`,
		`{"exec_id":"","job_id":"J","future_field":{"a":[1,2,3]}}`,
		`{"staleness":{"mode":"cached","max_cache_age":"7d"}}`,
		`{"staleness":{"max_cache_age":30}}`,
		`{"staleness":{"max_cache_age":1.5e3}}`,
		`{"staleness":{"max_cache_age":1e19}}`,
		`{"staleness":{"max_cache_age":"infd"}}`,
		`{"deadline_at":"2025-06-01T12:00:00+09:00"}`,
		`{"deadline_at":null,"retry":null,"staleness":null}`,
		`{"script":"\u6771\u4eac \ud800 \xff"}`,
		`{"EXEC_ID":"upper","Job_Id":"mixed"}`,
		`null`,
		`{}`,
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
	f.Fuzz(func(t *testing.T, in []byte) {
		var c1 Command
		if err := json.Unmarshal(in, &c1); err != nil {
			checkValidation(t, in)
			return
		}
		b1, err := json.Marshal(c1)
		if err != nil {
			t.Fatalf("a decoded Command must re-encode: %v\ninput: %q\ndecoded: %#v", err, in, c1)
		}
		var c2 Command
		if err := json.Unmarshal(b1, &c2); err != nil {
			t.Fatalf("a re-encoded Command must decode: %v\ninput: %q\nre-encoded: %s", err, in, b1)
		}
		if !commandsEqual(c1, c2) {
			t.Fatalf("round trip changed the Command\ninput: %q\nfirst:  %#v\nsecond: %#v\nbytes: %s", in, c1, c2, b1)
		}
		b2, err := json.Marshal(c2)
		if err != nil || string(b1) != string(b2) {
			t.Fatalf("re-encoding is not stable (%v):\n%s\n%s", err, b1, b2)
		}
		checkValidation(t, in)
	})
}

func checkValidation(t *testing.T, body []byte) {
	c, err := DecodeCommand(body)
	if err != nil {
		if err.Error() == "" {
			t.Fatalf("refused %q with an empty message", body)
		}
		if rid := RecoverRequestID(body); rid != "" && !ValidToken(rid) {
			t.Fatalf("refusal of %q would be answered on request_id %q, not a subject token", body, rid)
		}
		return
	}
	checkAccepted(t, body, c)
	again, err := json.Marshal(c)
	if err != nil {
		t.Fatalf("accepted %q but cannot re-encode it: %v", body, err)
	}
	c2, err := DecodeCommand(again)
	if err != nil {
		t.Fatalf("accepted %q, refused its re-encoding %s: %v", body, again, err)
	}
	if !commandsEqual(c, c2) {
		t.Fatalf("re-encoding changed the command\ninput: %q\nfirst:  %#v\nsecond: %#v", body, c, c2)
	}
}

func checkAccepted(t *testing.T, body []byte, c Command) {
	t.Helper()
	fail := func(what string) { t.Fatalf("accepted %q with %s: %#v", body, what, c) }
	if !ValidToken(c.RequestID) || !ValidToken(c.ExecID) {
		fail("an id that is not a subject token")
	}
	if strings.TrimSpace(c.Script) == "" {
		fail("a blank script")
	}
	if !slices.Contains([]string{"", ShellPowerShell, ShellPwsh, ShellCmd, ShellSh, ShellBash}, c.Shell) {
		fail("an unknown shell")
	}
	if c.TimeoutSecs < 0 || c.JitterSecs < 0 || c.Retry != nil && (c.Retry.Max < 0 || c.Retry.BackoffSecs < 0) {
		fail("a negative number")
	}
	if s := c.Staleness; s != nil {
		if !slices.Contains([]string{"", StalenessCached, StalenessStrict, StalenessUnchecked}, s.Mode) {
			fail("an unknown staleness mode")
		}
		if s.MaxCacheAge < 0 || s.Mode == StalenessStrict && s.MaxCacheAge == 0 {
			fail("an unusable max_cache_age")
		}
	}
	if c.ID == "" {
		fail("no job id")
	}
}

// commandsEqual compares Commands, treating deadlines as equal when they are
// the same instant in the same UTC offset (time.Time's *Location pointer
// differs between two decodes of the same fixed offset).
func commandsEqual(a, b Command) bool {
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
