package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/kvcas"
	"github.com/kanade-project/kanade/internal/wire"
)

func TestCheckVersion(t *testing.T) {
	rows := []Release{
		{Version: "1.0.0", OS: "linux", Arch: "amd64", Signed: true},
		{Version: "1.0.0", OS: "windows", Arch: "amd64", Signed: true},
		{Version: "1.1.0", OS: "linux", Arch: "amd64", Signed: true},
		{Version: "1.2.0", OS: "windows", Arch: "amd64"},
		{Version: "3.0.0", OS: "linux", Arch: "amd64", Problem: "record names 1.0.0/linux-amd64"},
		{Object: "junk", Problem: "object name is not <version>/<os>-<arch>"},
	}
	tests := []struct {
		version  string
		refused  []string // substrings of the *UnknownReleaseError
		warnings []string // substrings, one per warning in order
	}{
		{version: "1.0.0"},
		{version: "1.1.0", warnings: []string{"1.1.0 has no usable windows-amd64 release (not published)"}},
		{version: "1.2.0", warnings: []string{"1.2.0 has no usable linux-amd64 release (not published)", "1.2.0 for windows-amd64 is UNSIGNED"}},
		{version: "9.9.9", refused: []string{"version 9.9.9 has no usable release", "1.0.0 (linux-amd64, windows-amd64)", "publish 9.9.9"}},
		{version: "3.0.0", refused: []string{"3.0.0/linux-amd64: invalid record: record names 1.0.0/linux-amd64"}},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			warnings, err := CheckVersion(tt.version, rows)
			var ue *UnknownReleaseError
			if (len(tt.refused) > 0) != errors.As(err, &ue) {
				t.Fatalf("err = %v, want refused=%v", err, len(tt.refused) > 0)
			}
			for _, want := range tt.refused {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if len(warnings) != len(tt.warnings) {
				t.Fatalf("warnings %q, want %d", warnings, len(tt.warnings))
			}
			for i, want := range tt.warnings {
				if !strings.Contains(warnings[i], want) {
					t.Errorf("warning %d = %q, want %q", i, warnings[i], want)
				}
			}
		})
	}
	if _, err := CheckVersion("1.0.0", nil); err == nil || !strings.Contains(err.Error(), "no release is published at all") {
		t.Fatalf("empty store: %v", err)
	}
}

func TestFieldsApplyClear(t *testing.T) {
	jitter := "2m"
	tests := []struct {
		name    string
		layer   string
		version string
		jitter  *string
		inErr   string // Fields refuses (field named)
		after   string
		changed []bool
	}{
		{name: "into an empty layer", layer: `{}`, version: "1.0.0", after: `{"target_version":"1.0.0"}`, changed: []bool{true}},
		{name: "other fields kept", layer: `{"heartbeat_interval":"1m","colour":"x"}`, version: "1.0.0", jitter: &jitter,
			after: `{"colour":"x","heartbeat_interval":"1m","target_version":"1.0.0","target_version_jitter":"2m"}`, changed: []bool{true, true}},
		{name: "same target is unchanged", layer: `{"target_version": "1.0.0"}`, version: "1.0.0", jitter: &jitter,
			after: `{"target_version":"1.0.0","target_version_jitter":"2m"}`, changed: []bool{false, true}},
		{name: "bad version", version: "1.0/0", inErr: FieldTarget},
		{name: "bad jitter", version: "1.0.0", jitter: new("soon"), inErr: FieldJitter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := Fields(tt.version, tt.jitter)
			var ie *InputError
			if tt.inErr != "" {
				if !errors.As(err, &ie) || ie.Field != tt.inErr {
					t.Fatalf("Fields = %v, want an InputError on %s", err, tt.inErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]json.RawMessage
			if err := json.Unmarshal([]byte(tt.layer), &m); err != nil {
				t.Fatal(err)
			}
			changes := Apply(m, set)
			if b, _ := json.Marshal(m); string(b) != tt.after {
				t.Errorf("layer %s, want %s", b, tt.after)
			}
			if len(changes) != len(tt.changed) {
				t.Fatalf("changes %+v", changes)
			}
			for i, c := range changes {
				if c.Changed != tt.changed[i] {
					t.Errorf("change %d = %+v, want changed=%v", i, c, tt.changed[i])
				}
			}
		})
	}

	m := map[string]json.RawMessage{"target_version": json.RawMessage(`"1.0.0"`), "target_version_jitter": json.RawMessage(`"2m"`), "heartbeat_interval": json.RawMessage(`"1m"`)}
	if c := Clear(m); len(c) != 2 || c[0].New != nil || string(c[0].Old) != `"1.0.0"` || len(m) != 1 {
		t.Fatalf("Clear = %+v, layer %v", c, m)
	}
	if c := Clear(m); len(c) != 0 {
		t.Fatalf("second Clear = %+v", c)
	}
}

func TestOverrides(t *testing.T) {
	rows := []Target{
		{Key: "global", Target: "1"},
		{Key: "groups.a", Target: "1"},
		{Key: "groups.m", Target: "1"},
		{Key: "groups.z", Problem: "agents ignore it"},
		{Key: "pcs.p", Target: "1"},
	}
	tests := []struct {
		key  string
		want string
	}{
		{"global", "groups.a groups.m pcs.p"},
		{"groups.b", "groups.m pcs.p"},
		{"groups.m", "pcs.p"},
		{"pcs.p", ""},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			var got []string
			for _, r := range Overrides(rows, tt.key) {
				got = append(got, r.Key)
			}
			if strings.Join(got, " ") != tt.want {
				t.Fatalf("Overrides = %v, want %s", got, tt.want)
			}
		})
	}
}

// TestUpdate runs Update against a real broker: what it writes, and that
// every refusal writes nothing.
func TestUpdate(t *testing.T) {
	srv := brokertest.Start(t)
	ctx := context.Background()
	kv, err := srv.JetStream(t).KeyValue(ctx, wire.BucketAgentConfig)
	if err != nil {
		t.Fatal(err)
	}
	set, err := Fields("1.0.0", nil)
	if err != nil {
		t.Fatal(err)
	}
	apply := func(m map[string]json.RawMessage) []Change { return Apply(m, set) }
	errAudit := errors.New("audit unavailable")
	tests := []struct {
		name    string
		stored  string // "" leaves the key absent
		opts    func(key string) Options
		edit    func(map[string]json.RawMessage) []Change
		wantErr func(error) bool
		after   string // the stored value afterwards
	}{
		{name: "creates an absent layer", edit: apply, after: `{"target_version":"1.0.0"}`},
		{name: "keeps other fields", stored: `{"heartbeat_interval":"1m"}`, edit: apply, after: `{"heartbeat_interval":"1m","target_version":"1.0.0"}`},
		{name: "clear on an absent layer writes nothing", edit: Clear},
		{name: "a refused audit writes nothing", stored: `{}`, edit: apply, after: `{}`,
			opts:    func(string) Options { return Options{BeforeWrite: func(Outcome) error { return errAudit }} },
			wantErr: func(err error) bool { return errors.Is(err, errAudit) }},
		{name: "an expected revision that is not the current one", stored: `{}`, edit: apply, after: `{}`,
			opts: func(string) Options { return Options{Expect: new(uint64(0))} },
			wantErr: func(err error) bool {
				var ce *kvcas.ConflictError
				return errors.As(err, &ce)
			}},
		{name: "a concurrent change wins", stored: `{}`, edit: apply, after: `{"heartbeat_interval":"5m"}`,
			opts: func(key string) Options {
				return Options{AfterRead: func(string) {
					if _, err := kv.Put(ctx, key, []byte(`{"heartbeat_interval":"5m"}`)); err != nil {
						t.Error(err)
					}
				}}
			},
			wantErr: func(err error) bool {
				var ce *kvcas.ConflictError
				return errors.As(err, &ce)
			}},
		{name: "a layer that is not an object is not edited", stored: `[1]`, edit: apply, after: `[1]`,
			wantErr: func(err error) bool {
				var le *LayerError
				return errors.As(err, &le)
			}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := fmt.Sprintf("pcs.pc-%d", i)
			if tt.stored != "" {
				if _, err := kv.Put(ctx, key, []byte(tt.stored)); err != nil {
					t.Fatal(err)
				}
			}
			var o Options
			if tt.opts != nil {
				o = tt.opts(key)
			}
			before, _ := kvcas.Read(ctx, kv, key)
			out, err := Update(ctx, kv, key, o, tt.edit)
			if tt.wantErr != nil {
				if err == nil || !tt.wantErr(err) {
					t.Fatalf("Update = %+v, %v; want a refusal", out, err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			now, _ := kvcas.Read(ctx, kv, key)
			if string(now.Value) != tt.after {
				t.Errorf("stored %q, want %q", now.Value, tt.after)
			}
			if err == nil && out.Written != (now.Revision != before.Revision) {
				t.Errorf("Written = %v, revision %d → %d", out.Written, before.Revision, now.Revision)
			}
			if err == nil && out.Revision != now.Revision {
				t.Errorf("Outcome.Revision %d, stored %d", out.Revision, now.Revision)
			}
		})
	}
}
