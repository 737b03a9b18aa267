package api_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/api"
	"github.com/kanade-project/kanade/internal/apiauth"
	"github.com/kanade-project/kanade/internal/release"
	"github.com/kanade-project/kanade/internal/store"
	"github.com/kanade-project/kanade/internal/wire"
)

// withStore serves the API of r's broker again, this time with a
// projection, so GET /api/rollout can count agent versions.
func withStore(t *testing.T, r *rig, st *store.Store) *rig {
	t.Helper()
	h, err := api.New(api.Deps{NC: r.srv.Connect(t), JS: r.srv.JetStream(t), Auth: &apiauth.Authenticator{Token: adminToken, JWTSecret: r.secret},
		Logger: slog.New(slog.DiscardHandler), Store: st})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	return &rig{t: t, srv: r.srv, http: hs, secret: r.secret}
}

// publish uploads a small file as a release (signed when key is not nil).
func publish(t *testing.T, r *rig, version, goos, arch string, key ed25519.PrivateKey) release.Record {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(p, []byte("kanade-agent "+version+" "+goos+"/"+arch), 0o644); err != nil {
		t.Fatal(err)
	}
	rec, err := release.Publish(context.Background(), r.srv.JetStream(t), release.PublishOptions{Path: p, Version: version, OS: goos, Arch: arch, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestReleasesAndRollout(t *testing.T) {
	base := newRig(t)
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "kanade.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Now().UTC()
	if err := st.Tx(context.Background(), func(tx *store.Tx) error {
		var hbs []store.Heartbeat
		for i, v := range []string{"1.0.0", "1.0.0", "0.9.0"} {
			hbs = append(hbs, store.Heartbeat{Heartbeat: wire.Heartbeat{PCID: fmt.Sprintf("pc-%d", i), At: now, AgentVersion: v}, SeenAt: now})
		}
		return tx.UpsertHeartbeats(hbs)
	}); err != nil {
		t.Fatal(err)
	}
	r := withStore(t, base, st)
	js := r.srv.JetStream(t)

	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	signed := publish(t, r, "1.1.0", "linux", "amd64", key)
	publish(t, r, "1.0.0", "linux", "amd64", nil)

	viewerTok, operatorTok, adminTok := r.token(apiauth.RoleViewer), r.token(apiauth.RoleOperator), r.token(apiauth.RoleAdmin)
	// Fields set in a layer before a rollout must survive it.
	status, seeded := r.do("PUT", "/api/config/scopes/groups.canary", operatorTok, map[string]any{"values": map[string]any{"heartbeat_interval": "1m"}, "revision": 0})
	if status != 200 {
		t.Fatalf("seed groups.canary: %d %v", status, seeded)
	}
	seedRev := rev(seeded)
	// A layer another tool broke: rollouts must not edit it blindly.
	if kv, err := js.KeyValue(context.Background(), wire.BucketAgentConfig); err != nil {
		t.Fatal(err)
	} else if _, err := kv.Put(context.Background(), "pcs.broken", []byte(`[1]`)); err != nil {
		t.Fatal(err)
	}
	set := func(version string, jitter *string, revision *uint64) func() any {
		return func() any {
			b := map[string]any{"version": version}
			if jitter != nil {
				b["jitter"] = *jitter
			}
			if revision != nil {
				b["revision"] = *revision
			}
			return b
		}
	}
	two, zero := "2m", uint64(0)
	stored := func(key, want string) func(t *testing.T, b map[string]any) {
		return func(t *testing.T, b map[string]any) {
			if v, _ := configValue(t, js, key); v != want {
				t.Errorf("%s = %s, want %s", key, v, want)
			}
		}
	}
	// sameJSON compares a decoded answer with the JSON it should be.
	sameJSON := func(got any, want string) bool {
		var w any
		if err := json.Unmarshal([]byte(want), &w); err != nil {
			t.Fatal(err)
		}
		return reflect.DeepEqual(got, w)
	}
	// targetsByKey indexes GET /api/rollout's targets.
	targetsByKey := func(b map[string]any) map[string]any {
		m := map[string]any{}
		rows, _ := b["targets"].([]any)
		for _, row := range rows {
			m[row.(map[string]any)["key"].(string)] = row
		}
		return m
	}

	runSteps(t, r, []apiStep{
		{name: "releases", method: "GET", path: at("/api/releases"), token: viewerTok, status: 200, check: func(t *testing.T, b map[string]any) {
			rows, _ := b["releases"].([]any)
			if len(rows) != 2 {
				t.Fatalf("releases %v", b)
			}
			unsigned, sig := rows[0].(map[string]any), rows[1].(map[string]any)
			if unsigned["version"] != "1.0.0" || unsigned["signed"] != false || unsigned["problem"] != nil {
				t.Errorf("1.0.0 row %v", unsigned)
			}
			if sig["version"] != "1.1.0" || sig["os"] != "linux" || sig["arch"] != "amd64" || sig["signed"] != true || sig["sha256"] != signed.SHA256 ||
				sig["size"] != float64(signed.Size) || sig["key_id"] != signed.KeyID || sig["published_at"] == nil {
				t.Errorf("1.1.0 row %v, want %+v", sig, signed)
			}
		}},
		{name: "unpublished version", method: "PUT", path: at("/api/rollout/groups.canary"), token: operatorTok, body: set("9.9.9", nil, nil),
			status: 400, code: "unknown_release", msg: []string{"9.9.9 has no usable release", "1.0.0 (linux-amd64)"}},
		{name: "malformed version", method: "PUT", path: at("/api/rollout/groups.canary"), token: operatorTok, body: set("1.0/0", nil, nil), status: 400, code: "bad_value"},
		{name: "no version", method: "PUT", path: at("/api/rollout/groups.canary"), token: operatorTok, body: func() any { return map[string]any{} }, status: 400, code: "bad_value"},
		{name: "jitter too long", method: "PUT", path: at("/api/rollout/groups.canary"), token: operatorTok, body: set("1.1.0", new("30d"), nil),
			status: 400, code: "bad_value", msg: []string{"target_version_jitter must be at most"}},
		{name: "viewer may not roll out", method: "PUT", path: at("/api/rollout/groups.canary"), token: viewerTok, body: set("1.1.0", nil, nil), status: 403, code: "forbidden"},
		{name: "operator may not roll out globally", method: "PUT", path: at("/api/rollout/global"), token: operatorTok, body: set("1.1.0", nil, nil), status: 403, code: "forbidden"},
		{name: "bad scope", method: "PUT", path: at("/api/rollout/everyone"), token: operatorTok, body: set("1.1.0", nil, nil), status: 400, code: "bad_scope"},
		{name: "a layer that is not an object", method: "PUT", path: at("/api/rollout/pcs.broken"), token: operatorTok, body: set("1.1.0", nil, nil),
			status: 409, code: "bad_layer", msg: []string{"not a JSON object", "PUT /api/config/scopes/pcs.broken"}},
		{name: "revision 0 but the layer exists", method: "PUT", path: at("/api/rollout/groups.canary"), token: operatorTok, body: set("1.1.0", nil, &zero), status: 409, code: "conflict"},

		{name: "roll out to a group", method: "PUT", path: at("/api/rollout/groups.canary"), token: operatorTok, body: set("1.1.0", &two, nil),
			status: 200, audit: "rollout_set", auditKey: "groups.canary", write: true, check: func(t *testing.T, b map[string]any) {
				stored("groups.canary", `{"heartbeat_interval":"1m","target_version":"1.1.0","target_version_jitter":"2m"}`)(t, b)
				if b["written"] != true || b["scope"] != "group canary" || rev(b) <= uint64(b["previous_revision"].(float64)) || b["warnings"] != nil {
					t.Errorf("answer %v", b)
				}
				if !sameJSON(b["changes"], `[{"field":"target_version","old":null,"new":"1.1.0","changed":true},{"field":"target_version_jitter","old":null,"new":"2m","changed":true}]`) {
					t.Errorf("changes %v", b["changes"])
				}
			}},
		{name: "stale revision", method: "PUT", path: at("/api/rollout/groups.canary"), token: operatorTok, body: set("1.0.0", nil, &seedRev), status: 409, code: "conflict",
			msg: []string{"changed by someone else"}},
		{name: "same target again: nothing written", method: "PUT", path: at("/api/rollout/groups.canary"), token: operatorTok, body: set("1.1.0", nil, nil),
			status: 200, check: func(t *testing.T, b map[string]any) {
				if b["written"] != false || rev(b) != uint64(b["previous_revision"].(float64)) {
					t.Errorf("answer %v", b)
				}
			}},
		{name: "an unsigned release is rolled out with a warning", method: "PUT", path: at("/api/rollout/pcs.pc-1"), token: operatorTok, body: set("1.0.0", nil, &zero),
			status: 200, audit: "rollout_set", auditKey: "pcs.pc-1", write: true, check: func(t *testing.T, b map[string]any) {
				stored("pcs.pc-1", `{"target_version":"1.0.0"}`)(t, b)
				if w := fmt.Sprint(b["warnings"]); !strings.Contains(w, "1.0.0 for linux-amd64 is UNSIGNED") {
					t.Errorf("warnings %s", w)
				}
			}},
		{name: "admin rolls out globally; more specific layers are named", method: "PUT", path: at("/api/rollout/global"), token: adminTok, body: set("1.1.0", nil, nil),
			status: 200, audit: "rollout_set", auditKey: "global", write: true, check: func(t *testing.T, b map[string]any) {
				stored("global", `{"target_version":"1.1.0"}`)(t, b)
				over, _ := json.Marshal(b["overridden_by"])
				if !strings.Contains(string(over), `"key":"groups.canary"`) || !strings.Contains(string(over), `"key":"pcs.pc-1"`) {
					t.Errorf("overridden_by %s", over)
				}
			}},
		{name: "rollout shows targets and versions", method: "GET", path: at("/api/rollout"), token: viewerTok, status: 200, check: func(t *testing.T, b map[string]any) {
			got := targetsByKey(b)
			for key, want := range map[string]string{
				"global":        `{"scope":"global","key":"global","target_version":"1.1.0"}`,
				"groups.canary": `{"scope":"group canary","key":"groups.canary","target_version":"1.1.0","target_version_jitter":"2m"}`,
				"pcs.pc-1":      `{"scope":"pc pc-1","key":"pcs.pc-1","target_version":"1.0.0"}`,
			} {
				row, _ := got[key].(map[string]any)
				if _, v := configValue(t, js, key); row == nil || rev(row) != v {
					t.Errorf("%s: row %v, want revision %d", key, row, v)
					continue
				}
				delete(row, "revision")
				if !sameJSON(row, want) {
					t.Errorf("%s: row %v, want %s", key, row, want)
				}
			}
			if len(got) != 3 {
				t.Errorf("targets %v", b["targets"])
			}
			if !sameJSON(b["versions"], `[{"agent_version":"1.0.0","agents":2,"online":2},{"agent_version":"0.9.0","agents":1,"online":1}]`) {
				t.Errorf("versions %v", b["versions"])
			}
		}},
		{name: "viewer may not stop", method: "DELETE", path: at("/api/rollout/groups.canary"), token: viewerTok, status: 403, code: "forbidden"},
		{name: "stop at a stale revision", method: "DELETE", path: at("/api/rollout/groups.canary?revision=1"), token: operatorTok, status: 409, code: "conflict"},
		{name: "stop a group's rollout", method: "DELETE", path: at("/api/rollout/groups.canary"), token: operatorTok,
			status: 200, audit: "rollout_clear", auditKey: "groups.canary", write: true, check: func(t *testing.T, b map[string]any) {
				stored("groups.canary", `{"heartbeat_interval":"1m"}`)(t, b)
				if b["written"] != true || !sameJSON(b["changes"], `[{"field":"target_version","old":"1.1.0","new":null,"changed":true},{"field":"target_version_jitter","old":"2m","new":null,"changed":true}]`) {
					t.Errorf("answer %v", b)
				}
			}},
		{name: "stop again: nothing written", method: "DELETE", path: at("/api/rollout/groups.canary"), token: operatorTok, status: 200, check: func(t *testing.T, b map[string]any) {
			if b["written"] != false || !sameJSON(b["changes"], "[]") {
				t.Errorf("answer %v", b)
			}
		}},
		{name: "stop where no layer exists", method: "DELETE", path: at("/api/rollout/groups.nobody"), token: operatorTok, status: 200, check: func(t *testing.T, b map[string]any) {
			if b["written"] != false || rev(b) != 0 {
				t.Errorf("answer %v", b)
			}
		}},
		{name: "the stopped scope is gone from the rollout", method: "GET", path: at("/api/rollout"), token: viewerTok, status: 200, check: func(t *testing.T, b map[string]any) {
			if got := targetsByKey(b); len(got) != 2 || got["global"] == nil || got["pcs.pc-1"] == nil {
				t.Errorf("targets %v", b["targets"])
			}
		}},
	})

	// Without a projection the rollout view has targets only.
	status, b := base.do("GET", "/api/rollout", viewerTok, nil)
	if v, has := b["versions"]; status != 200 || !has || v != nil || len(b["targets"].([]any)) != 2 {
		t.Fatalf("rollout without a store = %d %v", status, b)
	}
}
