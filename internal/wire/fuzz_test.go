package wire

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzCommandDecode checks that decoding arbitrary bytes into a Command never
// panics, and that whatever decodes re-encodes into bytes that decode to an
// equal Command (and re-encode identically): the agent persists and
// republishes commands, so the encoding must be a fixed point.
func FuzzCommandDecode(f *testing.F) {
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
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var c1 Command
		if err := json.Unmarshal(in, &c1); err != nil {
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
	})
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
