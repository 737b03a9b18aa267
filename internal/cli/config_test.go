package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/fleetconfig"
	"github.com/kanade-project/kanade/internal/wire"
)

// fleet is a real broker with every kanade bucket, and a way to run the CLI
// against it in-process and to look at KV behind the CLI's back.
type fleet struct {
	t   *testing.T
	srv *brokertest.Server
	js  jetstream.JetStream
}

func newFleet(t *testing.T) *fleet {
	srv := brokertest.Start(t)
	return &fleet{t: t, srv: srv, js: srv.JetStream(t)}
}

func (f *fleet) kanade(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := Main(append([]string{"--server", f.srv.URL()}, args...), strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

func (f *fleet) kv(bucket string) jetstream.KeyValue {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := f.js.KeyValue(ctx, bucket)
	if err != nil {
		f.t.Fatal(err)
	}
	return kv
}

// get returns the stored value and revision of a key (revision 0: absent).
func (f *fleet) get(bucket, key string) (string, uint64) {
	f.t.Helper()
	e, err := f.kv(bucket).Get(context.Background(), key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", 0
	}
	if err != nil {
		f.t.Fatal(err)
	}
	return string(e.Value()), e.Revision()
}

func (f *fleet) put(bucket, key, value string) uint64 {
	f.t.Helper()
	rev, err := f.kv(bucket).Put(context.Background(), key, []byte(value))
	if err != nil {
		f.t.Fatal(err)
	}
	return rev
}

// keys lists the live keys of a bucket.
func (f *fleet) keys(bucket string) []string {
	f.t.Helper()
	l, err := f.kv(bucket).ListKeys(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for k := range l.Keys() {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// jsonEqual compares two JSON documents semantically.
func jsonEqual(t *testing.T, got, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Errorf("not JSON: %q: %v", got, err)
		return false
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want %q: %v", want, err)
	}
	return reflect.DeepEqual(g, w)
}

func mustContain(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s does not contain %q:\n%s", what, sub, s)
		}
	}
}

// TestConfigSetGetUnsetClear walks one layer of each scope through its
// whole life: absent, set, read, idempotent set, change, unset to {},
// clear, and checks the KV content and revision after every step.
func TestConfigSetGetUnsetClear(t *testing.T) {
	f := newFleet(t)
	scopes := []struct {
		name string
		flag []string
		key  string
	}{
		{"global", nil, "global"},
		{"group", []string{"--group", "canary"}, "groups.canary"},
		{"pc", []string{"--pc", "pc-1"}, "pcs.pc-1"},
	}
	for _, sc := range scopes {
		t.Run(sc.name, func(t *testing.T) {
			run := func(args ...string) (int, string, string) {
				return f.kanade(append(append([]string{"config"}, args...), sc.flag...)...)
			}
			where := "agent_config/" + sc.key

			code, out, errOut := run("get")
			if code != 0 || !strings.Contains(out, where+" is empty") {
				t.Fatalf("get on an absent layer = %d %q %q", code, out, errOut)
			}
			code, out, _ = run("get", "-o", "json")
			var view scopeView
			if code != 0 || json.Unmarshal([]byte(out), &view) != nil || view.Exists || view.Key != sc.key || len(view.Fields) != 0 {
				t.Fatalf("get -o json on an absent layer = %d %s", code, out)
			}

			code, out, errOut = run("set", "heartbeat_interval=1m", "inventory_enabled=false")
			val, rev := f.get(wire.BucketAgentConfig, sc.key)
			if code != 0 || rev == 0 {
				t.Fatalf("set = %d %q %q; stored rev %d", code, out, errOut, rev)
			}
			mustContain(t, "set output", out, `heartbeat_interval: (unset) → "1m"`, `inventory_enabled: (unset) → false`, fmt.Sprintf("written: revision %d", rev))
			if !jsonEqual(t, val, `{"heartbeat_interval":"1m","inventory_enabled":false}`) {
				t.Errorf("stored %s", val)
			}

			code, out, _ = run("get")
			if code != 0 {
				t.Fatalf("get = %d", code)
			}
			mustContain(t, "get output", out, fmt.Sprintf("%s (revision %d)", where, rev), `heartbeat_interval`, `"1m"`, `inventory_enabled`, `false`)
			code, out, _ = run("get", "-o", "json")
			view = scopeView{}
			if code != 0 || json.Unmarshal([]byte(out), &view) != nil || !view.Exists || view.Revision != rev ||
				string(view.Fields["heartbeat_interval"]) != `"1m"` || string(view.Fields["inventory_enabled"]) != `false` || len(view.Problems) != 0 {
				t.Errorf("get -o json = %d %s; want revision %d", code, out, rev)
			}

			// Setting the same value again writes nothing.
			code, out, _ = run("set", "heartbeat_interval=1m")
			if _, rev2 := f.get(wire.BucketAgentConfig, sc.key); code != 0 || rev2 != rev {
				t.Errorf("idempotent set = %d, revision %d → %d", code, rev, rev2)
			}
			mustContain(t, "idempotent set output", out, `heartbeat_interval: "1m" (unchanged)`, "nothing changed; not written")

			code, out, _ = run("set", "heartbeat_interval=2m")
			val, rev3 := f.get(wire.BucketAgentConfig, sc.key)
			if code != 0 || rev3 <= rev || !jsonEqual(t, val, `{"heartbeat_interval":"2m","inventory_enabled":false}`) {
				t.Errorf("change = %d, rev %d → %d, stored %s", code, rev, rev3, val)
			}
			mustContain(t, "change output", out, `heartbeat_interval: "1m" → "2m"`)

			code, out, _ = run("unset", "heartbeat_interval")
			val, rev4 := f.get(wire.BucketAgentConfig, sc.key)
			if code != 0 || rev4 <= rev3 || !jsonEqual(t, val, `{"inventory_enabled":false}`) {
				t.Errorf("unset = %d, stored %s", code, val)
			}
			mustContain(t, "unset output", out, `heartbeat_interval: "2m" → (unset)`)

			code, out, _ = run("unset", "heartbeat_interval")
			if _, rev5 := f.get(wire.BucketAgentConfig, sc.key); code != 0 || rev5 != rev4 {
				t.Errorf("unset of an unset field = %d, wrote (rev %d → %d)", code, rev4, rev5)
			}
			mustContain(t, "unset again output", out, "heartbeat_interval: not set", "nothing changed")

			// Unsetting the last field leaves an empty layer, not a deleted one.
			code, _, _ = run("unset", "inventory_enabled")
			val, rev6 := f.get(wire.BucketAgentConfig, sc.key)
			if code != 0 || rev6 == 0 || val != "{}" {
				t.Errorf("unset last field = %d, stored %q rev %d; want {}", code, val, rev6)
			}

			code, out, _ = run("clear")
			if _, r := f.get(wire.BucketAgentConfig, sc.key); code != 0 || r != 0 {
				t.Errorf("clear = %d, key still at revision %d", code, r)
			}
			mustContain(t, "clear output", out, "deleted "+where, fmt.Sprintf("was revision %d", rev6))
			code, out, _ = run("get")
			if code != 0 || !strings.Contains(out, "is empty") {
				t.Errorf("get after clear = %d %q", code, out)
			}
			code, out, _ = run("clear")
			if code != 0 || !strings.Contains(out, "already empty") {
				t.Errorf("clear of an absent layer = %d %q", code, out)
			}
			// A cleared key (tombstone) can be set again.
			code, _, errOut = run("set", "max_local_concurrent=3")
			if val, r := f.get(wire.BucketAgentConfig, sc.key); code != 0 || r == 0 || !jsonEqual(t, val, `{"max_local_concurrent":3}`) {
				t.Errorf("set after clear = %d %q, stored %q", code, errOut, val)
			}
		})
	}
}

// TestConfigSetKeepsOtherStoredFields: set merges into the stored object;
// fields it does not know (a newer kanade's) survive, and so do the others.
func TestConfigSetKeepsOtherStoredFields(t *testing.T) {
	f := newFleet(t)
	f.put(wire.BucketAgentConfig, "global", `{"future_field":{"x":[1,2]},"heartbeat_interval":"1m","max_local_concurrent":null}`)
	code, out, errOut := f.kanade("config", "set", "inventory_enabled=false")
	if code != 0 {
		t.Fatalf("set = %d %q %q", code, out, errOut)
	}
	val, _ := f.get(wire.BucketAgentConfig, "global")
	if !jsonEqual(t, val, `{"future_field":{"x":[1,2]},"heartbeat_interval":"1m","max_local_concurrent":null,"inventory_enabled":false}`) {
		t.Errorf("stored %s", val)
	}
	code, out, _ = f.kanade("config", "get")
	if code != 0 {
		t.Fatal(code)
	}
	mustContain(t, "get output", out, "future_field", "(unknown field: agents ignore it)", "(null: same as unset)")
}

// TestConfigUnusableStoredValues: get flags stored values the agents cannot
// use, with the resolver's message; set refuses to merge into a layer that
// is not a JSON object and writes nothing.
func TestConfigUnusableStoredValues(t *testing.T) {
	f := newFleet(t)
	f.put(wire.BucketAgentConfig, "groups.g", `{"heartbeat_interval":"0s","max_local_concurrent":"4"}`)
	code, out, _ := f.kanade("config", "get", "--group", "g")
	if code != 0 {
		t.Fatal(code)
	}
	mustContain(t, "get output", out, "(invalid: heartbeat_interval must be at least 1s", "(invalid: max_local_concurrent must be a whole number")
	f.put(wire.BucketAgentConfig, "pcs.p", `[1,2]`)
	code, out, _ = f.kanade("config", "get", "--pc", "p")
	if code != 0 {
		t.Fatal(code)
	}
	mustContain(t, "get output", out, "is not a JSON object; agents ignore this layer", "[1,2]")
	// Editing a layer that is not an object is refused, and writes nothing.
	_, rev := f.get(wire.BucketAgentConfig, "pcs.p")
	code, _, errOut := f.kanade("config", "set", "--pc", "p", "heartbeat_interval=1m")
	if _, rev2 := f.get(wire.BucketAgentConfig, "pcs.p"); code != exitFailure || rev2 != rev {
		t.Errorf("set on a non-object = %d %q, rev %d → %d", code, errOut, rev, rev2)
	}
	mustContain(t, "stderr", errOut, "not a JSON object", "kanade config clear")
}

// TestConfigRejectsBadInputWritesNothing: every malformed command exits 2
// with a helpful message, and neither the existing key nor any other key
// changes.
func TestConfigRejectsBadInputWritesNothing(t *testing.T) {
	f := newFleet(t)
	const stored = `{"heartbeat_interval":"1m"}`
	rev := f.put(wire.BucketAgentConfig, "global", stored)
	tests := []struct {
		name       string
		args       []string
		wantErr    string
		listFields bool
	}{
		{"unknown field", []string{"set", "bogus=1"}, `unknown field "bogus"`, true},
		{"malformed duration", []string{"set", "heartbeat_interval=soon"}, `invalid duration "soon"`, true},
		{"duration below min", []string{"set", "heartbeat_interval=0s"}, "at least 1s", true},
		{"duration above max", []string{"set", "heartbeat_interval=2h"}, "at most 1h", true},
		{"bad bool", []string{"set", "inventory_enabled=yes"}, "true or false", true},
		{"bad int", []string{"set", "max_local_concurrent=0"}, "at least 1", true},
		{"bad version", []string{"set", "target_version=1 0"}, "may contain only", true},
		{"one bad pair among good ones", []string{"set", "inventory_enabled=false", "heartbeat_interval=garbage", "max_local_concurrent=2"}, `"garbage"`, true},
		{"no equals sign", []string{"set", "heartbeat_interval"}, "expected field=value", true},
		{"field given twice", []string{"set", "heartbeat_interval=1m", "heartbeat_interval=2m"}, "more than once", true},
		{"unset unknown field", []string{"unset", "heartbeat_interval", "bogus"}, `unknown field "bogus"`, true},
		{"both scopes", []string{"set", "--group", "a", "--pc", "b", "heartbeat_interval=1m"}, "not both", false},
		{"bad group name", []string{"set", "--group", "a.b", "heartbeat_interval=1m"}, `group "a.b" may contain only`, false},
		{"empty group name", []string{"unset", "--group=", "heartbeat_interval"}, `group "" must be 1-128 characters`, false},
		{"bad pc name", []string{"clear", "--pc", "a b"}, `pc "a b" may contain only`, false},
		{"bad output", []string{"get", "-o", "yaml"}, `--output "yaml"`, false},
		{"set without pairs", []string{"set"}, "arg(s)", false},
		{"mistyped subcommand", []string{"sett", "heartbeat_interval=1m"}, `unknown command "sett" for "kanade config"`, false},
		{"clear with an argument", []string{"clear", "global"}, "unknown command", false},
		{"effective bad pc", []string{"effective", "a.b"}, `pc "a.b"`, false},
		{"effective negative cpus", []string{"effective", "p", "--cpus", "-1"}, "--cpus -1", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := f.kanade(append([]string{"config"}, tc.args...)...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, exitUsage, out, errOut)
			}
			mustContain(t, "stderr", errOut, tc.wantErr)
			if tc.listFields {
				mustContain(t, "stderr", errOut, "valid fields:", "duration (30s, 10m, 24h, 7d)", "true|false")
				for _, name := range fleetconfig.FieldNames() {
					mustContain(t, "stderr", errOut, name)
				}
			}
			if val, r := f.get(wire.BucketAgentConfig, "global"); r != rev || val != stored {
				t.Errorf("global changed: %q rev %d, want %q rev %d", val, r, stored, rev)
			}
			if keys := f.keys(wire.BucketAgentConfig); !slices.Equal(keys, []string{"global"}) {
				t.Errorf("agent_config keys = %v, want only global", keys)
			}
		})
	}
}

// TestCASWrite exercises the compare-and-set helpers every write goes
// through, with another writer changing the key between read and write.
func TestCASWrite(t *testing.T) {
	f := newFleet(t)
	kv := f.kv(wire.BucketAgentConfig)
	ctx := context.Background()
	conflict := func(t *testing.T, err error, wantMsg string) {
		t.Helper()
		var ee *exitError
		if !errors.As(err, &ee) || ee.code == exitOK {
			t.Fatalf("err = %v, want a non-zero exitError", err)
		}
		if ee.msg != wantMsg {
			t.Errorf("message\n got %q\nwant %q", ee.msg, wantMsg)
		}
	}

	t.Run("stale update", func(t *testing.T) {
		read := f.put(wire.BucketAgentConfig, "global", `{"heartbeat_interval":"1m"}`)
		other := f.put(wire.BucketAgentConfig, "global", `{"heartbeat_interval":"5m"}`)
		_, err := casPut(ctx, kv, "global", []byte(`{"heartbeat_interval":"2m"}`), read)
		conflict(t, err, fmt.Sprintf("agent_config/global was changed by someone else since it was read (revision %d); nothing written — run the command again", read))
		if val, rev := f.get(wire.BucketAgentConfig, "global"); val != `{"heartbeat_interval":"5m"}` || rev != other {
			t.Errorf("stored %q rev %d, want the other writer's value at rev %d", val, rev, other)
		}
	})
	t.Run("stale create", func(t *testing.T) {
		// Read: absent. Then someone creates it.
		other := f.put(wire.BucketAgentConfig, "groups.g", `{"inventory_enabled":false}`)
		_, err := casPut(ctx, kv, "groups.g", []byte(`{"inventory_enabled":true}`), 0)
		conflict(t, err, "agent_config/groups.g was changed by someone else since it was read (it did not exist then); nothing written — run the command again")
		if val, rev := f.get(wire.BucketAgentConfig, "groups.g"); val != `{"inventory_enabled":false}` || rev != other {
			t.Errorf("stored %q rev %d", val, rev)
		}
	})
	t.Run("stale delete", func(t *testing.T) {
		read := f.put(wire.BucketAgentConfig, "pcs.p", `{}`)
		other := f.put(wire.BucketAgentConfig, "pcs.p", `{"max_local_concurrent":2}`)
		err := casDelete(ctx, kv, "pcs.p", read)
		conflict(t, err, fmt.Sprintf("agent_config/pcs.p was changed by someone else since it was read (revision %d); nothing written — run the command again", read))
		if val, rev := f.get(wire.BucketAgentConfig, "pcs.p"); val != `{"max_local_concurrent":2}` || rev != other {
			t.Errorf("stored %q rev %d", val, rev)
		}
	})
	t.Run("stale read of a deleted key", func(t *testing.T) {
		// Read at revision r; someone deletes; the update must not resurrect it.
		read := f.put(wire.BucketAgentConfig, "pcs.q", `{}`)
		if err := kv.Delete(ctx, "pcs.q"); err != nil {
			t.Fatal(err)
		}
		_, err := casPut(ctx, kv, "pcs.q", []byte(`{"max_local_concurrent":2}`), read)
		conflict(t, err, fmt.Sprintf("agent_config/pcs.q was changed by someone else since it was read (revision %d); nothing written — run the command again", read))
		if _, rev := f.get(wire.BucketAgentConfig, "pcs.q"); rev != 0 {
			t.Errorf("deleted key resurrected at rev %d", rev)
		}
	})
	t.Run("fresh writes succeed", func(t *testing.T) {
		// Create over a tombstone (the key was deleted: Get says absent).
		f.put(wire.BucketAgentConfig, "pcs.r", `{}`)
		if err := kv.Delete(ctx, "pcs.r"); err != nil {
			t.Fatal(err)
		}
		rev, err := casPut(ctx, kv, "pcs.r", []byte(`{"inventory_enabled":false}`), 0)
		if err != nil {
			t.Fatalf("create over a tombstone: %v", err)
		}
		rev2, err := casPut(ctx, kv, "pcs.r", []byte(`{"inventory_enabled":true}`), rev)
		if err != nil || rev2 <= rev {
			t.Fatalf("update at the current revision = %d, %v", rev2, err)
		}
		if val, r := f.get(wire.BucketAgentConfig, "pcs.r"); val != `{"inventory_enabled":true}` || r != rev2 {
			t.Errorf("stored %q rev %d", val, r)
		}
		if err := casDelete(ctx, kv, "pcs.r", rev2); err != nil {
			t.Fatalf("delete at the current revision: %v", err)
		}
		if _, r := f.get(wire.BucketAgentConfig, "pcs.r"); r != 0 {
			t.Errorf("not deleted (rev %d)", r)
		}
	})
	t.Run("groups write is compare-and-set too", func(t *testing.T) {
		gkv := f.kv(wire.BucketAgentGroups)
		read := f.put(wire.BucketAgentGroups, "pc-9", `{"groups":["a"]}`)
		f.put(wire.BucketAgentGroups, "pc-9", `{"groups":["b"]}`)
		_, err := writeGroups(ctx, gkv, "pc-9", []string{"a", "c"}, read)
		conflict(t, err, fmt.Sprintf("agent_groups/pc-9 was changed by someone else since it was read (revision %d); nothing written — run the command again", read))
		if val, _ := f.get(wire.BucketAgentGroups, "pc-9"); val != `{"groups":["b"]}` {
			t.Errorf("stored %q", val)
		}
	})
}

// TestAgentGroups walks one PC's membership through add/rm/set/list and
// checks the stored value, and that a write happens exactly when the
// membership changes.
func TestAgentGroups(t *testing.T) {
	f := newFleet(t)
	steps := []struct {
		args      []string
		code      int
		out, err  string
		want      []string // stored groups after the step; nil: key absent
		wantWrite bool
	}{
		{[]string{"list", "pc-1"}, 0, "pc-1 is in no group", "", nil, false},
		{[]string{"rm", "pc-1", "canary"}, 0, "not in canary", "", nil, false},
		{[]string{"set", "pc-1"}, 0, "nothing written", "", nil, false},
		{[]string{"add", "pc-1", "finance", "canary", "canary"}, 0, "groups (none) → canary, finance; written: revision", "", []string{"canary", "finance"}, true},
		{[]string{"add", "pc-1", "canary"}, 0, "already in canary", "", []string{"canary", "finance"}, false},
		{[]string{"add", "pc-1", "ops", "bad.name"}, exitUsage, "", `group "bad.name" may contain only`, []string{"canary", "finance"}, false},
		{[]string{"add", "pc-1", "ops", ""}, exitUsage, "", `group "" must be 1-128 characters`, []string{"canary", "finance"}, false},
		{[]string{"list", "pc-1"}, 0, "  canary\n  finance\n", "", []string{"canary", "finance"}, false},
		{[]string{"add", "pc-1", "Zeta", "alpha"}, 0, "added to Zeta", "", []string{"Zeta", "alpha", "canary", "finance"}, true},
		{[]string{"rm", "pc-1", "canary", "nothere", "Zeta"}, 0, "not in nothere", "", []string{"alpha", "finance"}, true},
		{[]string{"rm", "pc-1", "nothere"}, 0, "groups unchanged (alpha, finance); nothing written", "", []string{"alpha", "finance"}, false},
		{[]string{"rm", "pc-1", "x*"}, exitUsage, "", `group "x*"`, []string{"alpha", "finance"}, false},
		{[]string{"set", "pc-1", "zeta", "alpha", "alpha"}, 0, "groups alpha, finance → alpha, zeta", "", []string{"alpha", "zeta"}, true},
		{[]string{"set", "pc-1", "alpha", "zeta"}, 0, "nothing written", "", []string{"alpha", "zeta"}, false},
		{[]string{"set", "pc-1", "a b"}, exitUsage, "", `group "a b"`, []string{"alpha", "zeta"}, false},
		{[]string{"set", "pc-1"}, 0, "groups alpha, zeta → (none)", "", []string{}, true},
		{[]string{"set", "pc-1"}, 0, "nothing written", "", []string{}, false},
		{[]string{"list", "pc-1"}, 0, "pc-1 is in no group (revision", "", []string{}, false},
		{[]string{"add", "pc 1", "g"}, exitUsage, "", `pc "pc 1"`, []string{}, false},
		{[]string{"add", "pc-1"}, exitUsage, "", "arg(s)", []string{}, false},
		{[]string{"sett", "pc-1", "a"}, exitUsage, "", `unknown command "sett" for "kanade agent groups"`, []string{}, false},
		{[]string{"list", "pc-1", "-o", "xml"}, exitUsage, "", `--output "xml"`, []string{}, false},
	}
	_, rev := f.get(wire.BucketAgentGroups, "pc-1")
	for i, st := range steps {
		code, out, errOut := f.kanade(append([]string{"agent", "groups"}, st.args...)...)
		name := fmt.Sprintf("step %d (%s)", i, strings.Join(st.args, " "))
		if code != st.code || !strings.Contains(out, st.out) || !strings.Contains(errOut, st.err) {
			t.Fatalf("%s = %d\nstdout: %s\nstderr: %s\nwant %d, stdout with %q, stderr with %q", name, code, out, errOut, st.code, st.out, st.err)
		}
		val, rev2 := f.get(wire.BucketAgentGroups, "pc-1")
		if wrote := rev2 != rev; wrote != st.wantWrite {
			t.Fatalf("%s: wrote = %v (rev %d → %d), want %v", name, wrote, rev, rev2, st.wantWrite)
		}
		rev = rev2
		if st.want == nil {
			if rev != 0 {
				t.Fatalf("%s: key exists: %s", name, val)
			}
			continue
		}
		want, _ := json.Marshal(wire.AgentGroups{Groups: st.want})
		if val != string(want) {
			t.Fatalf("%s: stored %s, want %s", name, val, want)
		}
		if st.wantWrite && !strings.Contains(out, fmt.Sprintf("written: revision %d", rev)) {
			t.Errorf("%s: output does not give the new revision %d: %s", name, rev, out)
		}
	}

	f.kanade("agent", "groups", "set", "pc-1", "b", "a")
	_, rev = f.get(wire.BucketAgentGroups, "pc-1")
	code, out, _ := f.kanade("agent", "groups", "list", "pc-1", "-o", "json")
	var view groupsView
	if code != 0 || json.Unmarshal([]byte(out), &view) != nil || view.PC != "pc-1" || !slices.Equal(view.Groups, []string{"a", "b"}) || view.Revision != rev {
		t.Errorf("list -o json = %d %s, want groups [a b] at revision %d", code, out, rev)
	}
}

// TestAgentGroupsHandWrittenValues: values written by hand are read
// leniently; a logically unchanged membership is not rewritten; an
// undecodable value is only replaced by an explicit set.
func TestAgentGroupsHandWrittenValues(t *testing.T) {
	f := newFleet(t)
	rev := f.put(wire.BucketAgentGroups, "pc-2", `{"groups":["b","a","a"]}`)
	code, out, _ := f.kanade("agent", "groups", "add", "pc-2", "a")
	if _, r := f.get(wire.BucketAgentGroups, "pc-2"); code != 0 || r != rev || !strings.Contains(out, "already in a") {
		t.Errorf("add of a present group to an unsorted value = %d %q, rev %d → %d", code, out, rev, r)
	}
	rev = f.put(wire.BucketAgentGroups, "pc-3", `{"groups":["ok","bad.one"]}`)
	code, out, errOut := f.kanade("agent", "groups", "list", "pc-3")
	if code != 0 || !strings.Contains(out, "ok") || strings.Contains(out, "bad.one") || !strings.Contains(errOut, `"bad.one"`) {
		t.Errorf("list with an invalid stored name = %d %q %q", code, out, errOut)
	}
	rev = f.put(wire.BucketAgentGroups, "pc-4", `not json`)
	code, _, errOut = f.kanade("agent", "groups", "add", "pc-4", "a")
	if _, r := f.get(wire.BucketAgentGroups, "pc-4"); code != exitFailure || r != rev || !strings.Contains(errOut, "kanade agent groups set pc-4") {
		t.Errorf("add on an undecodable value = %d %q, rev %d → %d", code, errOut, rev, r)
	}
	code, _, _ = f.kanade("agent", "groups", "set", "pc-4", "a")
	if val, _ := f.get(wire.BucketAgentGroups, "pc-4"); code != 0 || val != `{"groups":["a"]}` {
		t.Errorf("set over an undecodable value = %d, stored %q", code, val)
	}
}

// seedEffective stores a fleet where pc-1 is in groups finance and canary,
// which both set max_local_concurrent (a conflict), with one invalid value
// in global and a row for a group pc-1 is not in.
func seedEffective(f *fleet) {
	f.put(wire.BucketAgentGroups, "pc-1", `{"groups":["finance","canary"]}`)
	f.put(wire.BucketAgentConfig, "global", `{"heartbeat_interval":"1m","inventory_interval":"3s","unknown":1}`)
	f.put(wire.BucketAgentConfig, "groups.canary", `{"max_local_concurrent":2,"inventory_jitter":"5m"}`)
	f.put(wire.BucketAgentConfig, "groups.finance", `{"max_local_concurrent":4,"target_version":"1.2.3"}`)
	f.put(wire.BucketAgentConfig, "groups.other", `{"heartbeat_interval":"2m","inventory_enabled":false}`)
	f.put(wire.BucketAgentConfig, "pcs.pc-1", `{"target_version_jitter":"1h"}`)
	f.put(wire.BucketAgentConfig, "pcs.pc-2", `{"inventory_enabled":false}`)
}

// expectedResolution resolves pc's layers straight from KV with the shared
// resolver, independently of the CLI code.
func (f *fleet) expectedResolution(pc string, groups []string, cpus int) fleetconfig.Resolution {
	f.t.Helper()
	load := func(key, name string) *fleetconfig.Layer {
		val, rev := f.get(wire.BucketAgentConfig, key)
		if rev == 0 {
			return nil
		}
		l, err := fleetconfig.ParseLayer(name, []byte(val))
		if err != nil {
			f.t.Fatal(err)
		}
		return &l
	}
	var gl []fleetconfig.Layer
	for _, g := range groups {
		if l := load("groups."+g, "group:"+g); l != nil {
			gl = append(gl, *l)
		}
	}
	return fleetconfig.Resolve(fleetconfig.Defaults(cpus), load("global", "global"), gl, load("pcs."+pc, "pc"))
}

func TestConfigEffectiveAgreesWithResolver(t *testing.T) {
	f := newFleet(t)
	seedEffective(f)
	want := f.expectedResolution("pc-1", []string{"canary", "finance"}, 8)
	if len(want.Conflicts) != 1 || len(want.Problems) != 1 {
		t.Fatalf("seed does not produce one conflict and one problem: %+v", want)
	}

	code, out, errOut := f.kanade("config", "effective", "pc-1", "--cpus", "8", "-o", "json")
	if code != 0 {
		t.Fatalf("effective -o json = %d %q", code, errOut)
	}
	var got effectiveReport
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got.PCID != "pc-1" || got.CPUs != 8 || !slices.Equal(got.Groups, []string{"canary", "finance"}) {
		t.Errorf("pc %q cpus %d groups %v", got.PCID, got.CPUs, got.Groups)
	}
	if got.Effective != want.Effective {
		t.Errorf("effective\n got %+v\nwant %+v", got.Effective, want.Effective)
	}
	if !reflect.DeepEqual(got.Sources, want.Sources) {
		t.Errorf("sources\n got %v\nwant %v", got.Sources, want.Sources)
	}
	if !reflect.DeepEqual(got.Conflicts, want.Conflicts) {
		t.Errorf("conflicts\n got %+v\nwant %+v", got.Conflicts, want.Conflicts)
	}
	gp, _ := json.Marshal(got.Problems)
	wp, _ := json.Marshal(want.Problems)
	if !jsonEqual(t, string(gp), string(wp)) {
		t.Errorf("problems\n got %s\nwant %s", gp, wp)
	}
	wantRevs := []string{"global", "groups.canary", "groups.finance", "pcs.pc-1"}
	for _, k := range wantRevs {
		if _, rev := f.get(wire.BucketAgentConfig, k); got.Revisions[k] != rev {
			t.Errorf("revision of %s = %d, want %d", k, got.Revisions[k], rev)
		}
	}
	if len(got.Revisions) != len(wantRevs) {
		t.Errorf("revisions %v include a layer pc-1 does not use", got.Revisions)
	}
	if got.Agent != nil || !strings.Contains(got.AgentError, "no agent is connected as pc-1") {
		t.Errorf("agent %+v, error %q", got.Agent, got.AgentError)
	}
	// Spot checks against the seed, independent of the resolver.
	if got.Effective.MaxLocalConcurrent != 4 || got.Sources["max_local_concurrent"] != "group:finance" ||
		got.Effective.HeartbeatInterval.D() != time.Minute || got.Sources["inventory_interval"] != "default" {
		t.Errorf("seed not resolved as expected: %+v %v", got.Effective, got.Sources)
	}

	code, out, errOut = f.kanade("config", "effective", "pc-1", "--cpus", "8")
	if code != 0 {
		t.Fatalf("effective = %d %q", code, errOut)
	}
	mustContain(t, "text", out, "pc-1: groups canary, finance (agent_groups/pc-1 revision")
	for _, fd := range fleetconfig.Fields() {
		row := regexp.MustCompile(`(?m)^` + fd.Name + `\s+(.+?)\s{2,}(\S+)$`).FindStringSubmatch(out)
		if row == nil {
			t.Errorf("no row for %s in:\n%s", fd.Name, out)
			continue
		}
		if row[1] != fieldValue(want.Effective, fd.Name) || row[2] != want.Sources[fd.Name] {
			t.Errorf("row %s = %q from %q, want %q from %q", fd.Name, row[1], row[2], fieldValue(want.Effective, fd.Name), want.Sources[fd.Name])
		}
	}
	mustContain(t, "text", out,
		"conflicts (a field set by several groups; the last group in alphabetical order wins):",
		"  max_local_concurrent: set by groups canary, finance; finance wins",
		"problems (values agents cannot use):",
		`  global inventory_interval = "3s": inventory_interval must be at least 10s, got 3s; using the default`,
		"agent: no agent is connected as pc-1")
	if strings.Contains(out, "pass --cpus") {
		t.Errorf("asks for --cpus although it was given:\n%s", out)
	}
}

// TestConfigEffectiveUnknownCPUCount: without --cpus and without an agent,
// a defaulted max_local_concurrent is shown as the PC's CPU count.
func TestConfigEffectiveUnknownCPUCount(t *testing.T) {
	f := newFleet(t)
	seedEffective(f)
	code, out, _ := f.kanade("config", "effective", "pc-2")
	if code != 0 {
		t.Fatal(code)
	}
	if !regexp.MustCompile(`(?m)^max_local_concurrent\s+CPU count\s+default$`).MatchString(out) || !regexp.MustCompile(`(?m)^inventory_enabled\s+false\s+pc$`).MatchString(out) {
		t.Errorf("rows:\n%s", out)
	}
	mustContain(t, "text", out, "pc-2: no group", "pass --cpus N")
	code, out, _ = f.kanade("config", "effective", "pc-2", "-o", "json")
	var got effectiveReport
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil {
		t.Fatalf("%d %s", code, out)
	}
	want := f.expectedResolution("pc-2", nil, 1)
	want.Effective.MaxLocalConcurrent = 0 // unknown: the PC's CPU count
	if got.CPUs != 0 || got.Effective != want.Effective || !reflect.DeepEqual(got.Sources, want.Sources) || got.Groups == nil {
		t.Errorf("got %+v\nwant %+v", got.ConfigReport, want)
	}
}

// TestConfigEffectiveUnreadableEntries: an undecodable agent_groups value
// or layer is reported as a problem, never applied.
func TestConfigEffectiveUnreadableEntries(t *testing.T) {
	f := newFleet(t)
	f.put(wire.BucketAgentGroups, "pc-5", `garbage`)
	f.put(wire.BucketAgentConfig, "pcs.pc-5", `[1]`)
	f.put(wire.BucketAgentConfig, "global", `{"heartbeat_interval":"1m"}`)
	code, out, _ := f.kanade("config", "effective", "pc-5", "--cpus", "2", "-o", "json")
	var got effectiveReport
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil {
		t.Fatalf("%d %s", code, out)
	}
	var layers []string
	for _, p := range got.Problems {
		layers = append(layers, p.Layer)
	}
	if !slices.Equal(layers, []string{"agent_groups/pc-5", "pc"}) || len(got.Groups) != 0 || got.Effective.HeartbeatInterval.D() != time.Minute {
		t.Errorf("problems %+v groups %v effective %+v", got.Problems, got.Groups, got.Effective)
	}
}

// answerConfig makes a fake agent answer agents.<pc>.config with rep.
func answerConfig(t *testing.T, f *fleet, pc string, rep wire.ConfigReport) {
	nc := f.srv.Connect(t)
	data, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Subscribe(wire.SubjectAgentConfig(pc), func(m *nats.Msg) { _ = m.Respond(data) }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil { // the subscription is registered before the CLI asks
		t.Fatal(err)
	}
}

// TestConfigEffectiveAsksTheAgent: when the agent answers, its CPU count
// resolves max_local_concurrent's default, and its view is shown next to
// the one resolved from KV, differences included.
func TestConfigEffectiveAsksTheAgent(t *testing.T) {
	f := newFleet(t)
	f.put(wire.BucketAgentConfig, "pcs.pc-3", `{"heartbeat_interval":"1m"}`)
	sources := map[string]string{}
	for _, fd := range fleetconfig.Fields() {
		sources[fd.Name] = "default"
	}
	// pc-3's agent has not applied the new heartbeat yet.
	answerConfig(t, f, "pc-3", wire.ConfigReport{PCID: "pc-3", Effective: fleetconfig.Defaults(6), Sources: sources, Synced: true})
	// pc-4's agent agrees with KV.
	answerConfig(t, f, "pc-4", wire.ConfigReport{PCID: "pc-4", Effective: fleetconfig.Defaults(6), Sources: sources, Synced: true})

	code, out, _ := f.kanade("config", "effective", "pc-3", "-o", "json")
	var got effectiveReport
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil {
		t.Fatalf("%d %s", code, out)
	}
	want := f.expectedResolution("pc-3", nil, 6)
	if got.CPUs != 6 || got.Effective != want.Effective || got.Agent == nil || got.AgentError != "" {
		t.Errorf("cpus %d effective %+v agent %+v err %q; want cpus 6 and %+v", got.CPUs, got.Effective, got.Agent, got.AgentError, want.Effective)
	}
	wantDiff := []configDifference{{Field: "heartbeat_interval", KV: "1m", KVSource: "pc", Agent: "30s", AgentSource: "default"}}
	if !reflect.DeepEqual(got.Differences, wantDiff) {
		t.Errorf("differences = %+v, want %+v", got.Differences, wantDiff)
	}
	code, out, _ = f.kanade("config", "effective", "pc-3")
	if code != 0 {
		t.Fatal(code)
	}
	mustContain(t, "text", out, "agent pc-3 runs with a different configuration")
	if !regexp.MustCompile(`(?m)^  heartbeat_interval\s+1m \(pc\)\s+30s \(default\)$`).MatchString(out) || !regexp.MustCompile(`(?m)^max_local_concurrent\s+6\s+default$`).MatchString(out) {
		t.Errorf("text:\n%s", out)
	}

	code, out, _ = f.kanade("config", "effective", "pc-4")
	if code != 0 || !strings.Contains(out, "agent pc-4 answered: it runs with the same configuration") {
		t.Errorf("%d\n%s", code, out)
	}
	// --agent-timeout 0 does not ask.
	code, out, _ = f.kanade("config", "effective", "pc-4", "--agent-timeout", "0", "-o", "json")
	got = effectiveReport{}
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || got.Agent != nil || got.CPUs != 0 {
		t.Errorf("--agent-timeout 0: %d %s", code, out)
	}
}
