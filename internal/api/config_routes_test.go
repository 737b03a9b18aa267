package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/apiauth"
	"github.com/kanade-project/kanade/internal/wire"
)

// auditEvents reads every record of the AUDIT stream, oldest first.
func auditEvents(t *testing.T, js jetstream.JetStream) []wire.AuditEvent {
	t.Helper()
	s, err := js.Stream(context.Background(), wire.StreamAudit)
	if err != nil {
		t.Fatal(err)
	}
	var out []wire.AuditEvent
	for seq := uint64(1); ; seq++ {
		m, err := s.GetMsg(context.Background(), seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		var ev wire.AuditEvent
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
}

// configSeq is the last sequence of agent_config's stream: it moves on any
// write (put, delete) to any key.
func configSeq(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), "KV_"+wire.BucketAgentConfig)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

// configValue returns an agent_config key as stored (revision 0: absent).
func configValue(t *testing.T, js jetstream.JetStream, key string) (string, uint64) {
	t.Helper()
	kv, err := js.KeyValue(context.Background(), wire.BucketAgentConfig)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(context.Background(), key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(e.Value()), e.Revision()
}

// apiStep is one request of a scripted table: what it must answer, and
// whether it must write agent_config and leave an audit record.
type apiStep struct {
	name   string
	method string
	path   func() string
	token  string
	body   func() any // nil: no body
	status int
	code   string // error code; "" for success
	// msg are substrings of the error message.
	msg []string
	// audit is the action of the one audit record the step must add
	// (target: auditKey); "" means none, and then agent_config must not
	// change either.
	audit    string
	auditKey string
	// write: agent_config changes (only with audit).
	write bool
	check func(t *testing.T, body map[string]any)
}

// runSteps runs steps in order against r, checking each answer, the audit
// stream and agent_config's stream.
func runSteps(t *testing.T, r *rig, steps []apiStep) {
	t.Helper()
	js := r.srv.JetStream(t)
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			seq, audits := configSeq(t, js), len(auditEvents(t, js))
			var body any
			if st.body != nil {
				body = st.body()
			}
			status, out := r.do(st.method, st.path(), st.token, body)
			if status != st.status || errCode(out) != st.code {
				t.Fatalf("%s %s = %d %v, want %d %q", st.method, st.path(), status, out, st.status, st.code)
			}
			if st.code != "" {
				msg, _ := out["error"].(map[string]any)["message"].(string)
				for _, m := range st.msg {
					if !strings.Contains(msg, m) {
						t.Errorf("error message %q lacks %q", msg, m)
					}
				}
			}
			evs := auditEvents(t, js)
			switch {
			case st.audit == "" && len(evs) != audits:
				t.Errorf("%d audit records added: %+v", len(evs)-audits, evs[audits:])
			case st.audit != "" && len(evs) != audits+1:
				t.Errorf("%d audit records added, want 1 %s", len(evs)-audits, st.audit)
			case st.audit != "":
				if ev := evs[len(evs)-1]; ev.Action != st.audit || ev.Target != st.auditKey || ev.Actor == "" {
					t.Errorf("audit record %+v, want action %s target %s", ev, st.audit, st.auditKey)
				}
			}
			if after := configSeq(t, js); (after != seq) != st.write {
				t.Errorf("agent_config sequence %d → %d, want written=%v", seq, after, st.write)
			}
			if st.check != nil {
				st.check(t, out)
			}
		})
	}
}

// at is a fixed request path.
func at(p string) func() string { return func() string { return p } }

// rev is the revision in an answer.
func rev(body map[string]any) uint64 {
	f, _ := body["revision"].(float64)
	return uint64(f)
}

func TestConfigScopes(t *testing.T) {
	r := newRig(t)
	js := r.srv.JetStream(t)
	viewerTok, operatorTok, adminTok := r.token(apiauth.RoleViewer), r.token(apiauth.RoleOperator), r.token(apiauth.RoleAdmin)
	canary := map[string]any{"heartbeat_interval": "1m", "inventory_enabled": false, "max_local_concurrent": 2}
	revs := map[string]uint64{}
	put := func(values any, rv func() uint64) func() any {
		return func() any { return map[string]any{"values": values, "revision": rv()} }
	}
	revOf := func(key string) func() uint64 { return func() uint64 { return revs[key] } }
	zero := func() uint64 { return 0 }
	// canaryAt is groups.canary's path with ?revision= the last one seen
	// minus back (1: a stale revision).
	canaryAt := func(back uint64) func() string {
		return func() string {
			return fmt.Sprintf("/api/config/scopes/groups.canary?revision=%d", revs["groups.canary"]-back)
		}
	}
	record := func(key string) func(t *testing.T, body map[string]any) {
		return func(t *testing.T, body map[string]any) {
			if body["key"] != key || rev(body) == 0 {
				t.Fatalf("answer %v", body)
			}
			revs[key] = rev(body)
			if _, stored := configValue(t, js, key); stored != revs[key] {
				t.Fatalf("answered revision %d, stored %d", revs[key], stored)
			}
		}
	}

	runSteps(t, r, []apiStep{
		{name: "list nothing", method: "GET", path: at("/api/config/scopes"), token: viewerTok, status: 200, check: func(t *testing.T, b map[string]any) {
			if s, ok := b["scopes"].([]any); !ok || len(s) != 0 {
				t.Fatalf("scopes = %v", b)
			}
		}},
		{name: "get an unset layer", method: "GET", path: at("/api/config/scopes/groups.canary"), token: viewerTok, status: 404, code: "unknown_scope"},
		{name: "no token", method: "GET", path: at("/api/config/scopes"), status: 401, code: "unauthorized"},
		{name: "viewer may not write", method: "PUT", path: at("/api/config/scopes/groups.canary"), token: viewerTok, body: put(canary, zero), status: 403, code: "forbidden"},
		{name: "operator may not write global", method: "PUT", path: at("/api/config/scopes/global"), token: operatorTok, body: put(canary, zero), status: 403, code: "forbidden", msg: []string{"global", "admin"}},
		{name: "operator may not delete global", method: "DELETE", path: at("/api/config/scopes/global?revision=1"), token: operatorTok, status: 403, code: "forbidden"},
		{name: "unknown field", method: "PUT", path: at("/api/config/scopes/groups.canary"), token: operatorTok,
			body: put(map[string]any{"heartbeat_intervall": "1m"}, zero), status: 400, code: "unknown_field",
			msg: []string{`"heartbeat_intervall"`, "known fields:", "heartbeat_interval", "max_local_concurrent", "nothing written"}},
		{name: "duration out of range", method: "PUT", path: at("/api/config/scopes/groups.canary"), token: operatorTok,
			body: put(map[string]any{"heartbeat_interval": "100ms"}, zero), status: 400, code: "bad_value", msg: []string{"heartbeat_interval must be at least 1s"}},
		{name: "duration given as a number", method: "PUT", path: at("/api/config/scopes/groups.canary"), token: operatorTok,
			body: put(map[string]any{"inventory_interval": 60}, zero), status: 400, code: "bad_value", msg: []string{"inventory_interval must be a duration string"}},
		{name: "bool given as a string", method: "PUT", path: at("/api/config/scopes/groups.canary"), token: operatorTok,
			body: put(map[string]any{"inventory_enabled": "yes"}, zero), status: 400, code: "bad_value", msg: []string{"true or false"}},
		{name: "int given as a string", method: "PUT", path: at("/api/config/scopes/groups.canary"), token: operatorTok,
			body: put(map[string]any{"max_local_concurrent": "4"}, zero), status: 400, code: "bad_value", msg: []string{"whole number"}},
		{name: "int below its minimum", method: "PUT", path: at("/api/config/scopes/groups.canary"), token: operatorTok,
			body: put(map[string]any{"max_local_concurrent": 0}, zero), status: 400, code: "bad_value", msg: []string{"at least 1"}},
		{name: "null value", method: "PUT", path: at("/api/config/scopes/groups.canary"), token: operatorTok,
			body: put(map[string]any{"max_local_concurrent": nil}, zero), status: 400, code: "bad_value", msg: []string{"leave the field out"}},
		{name: "bad version", method: "PUT", path: at("/api/config/scopes/groups.canary"), token: operatorTok,
			body: put(map[string]any{"target_version": "1.0/0"}, zero), status: 400, code: "bad_value", msg: []string{"may contain only"}},
		{name: "scope with a dot in the name", method: "PUT", path: at("/api/config/scopes/groups.a.b"), token: operatorTok, body: put(canary, zero), status: 400, code: "bad_scope"},
		{name: "not a scope", method: "GET", path: at("/api/config/scopes/fleet"), token: viewerTok, status: 400, code: "bad_scope", msg: []string{"global, groups.<group> or pcs.<pc>"}},
		{name: "no revision", method: "PUT", path: at("/api/config/scopes/groups.canary"), token: operatorTok,
			body: func() any { return map[string]any{"values": canary} }, status: 400, code: "bad_request", msg: []string{"revision is required"}},
		{name: "no values", method: "PUT", path: at("/api/config/scopes/groups.canary"), token: operatorTok,
			body: func() any { return map[string]any{"revision": 0} }, status: 400, code: "bad_request", msg: []string{"values is required"}},
		{name: "unknown body field", method: "PUT", path: at("/api/config/scopes/groups.canary"), token: operatorTok,
			body: func() any { return map[string]any{"values": canary, "revision": 0, "force": true} }, status: 400, code: "bad_request"},

		{name: "create a group layer", method: "PUT", path: at("/api/config/scopes/groups.canary"), token: operatorTok, body: put(canary, zero),
			status: 200, audit: "config_put", auditKey: "groups.canary", write: true, check: func(t *testing.T, b map[string]any) {
				record("groups.canary")(t, b)
				// Exactly the bytes `kanade config set` stores for the same values.
				if v, _ := configValue(t, js, "groups.canary"); v != `{"heartbeat_interval":"1m","inventory_enabled":false,"max_local_concurrent":2}` {
					t.Errorf("stored %s", v)
				}
				if b["written"] != true || b["kind"] != "group" || b["name"] != "canary" {
					t.Errorf("answer %v", b)
				}
			}},
		{name: "create again: conflict", method: "PUT", path: at("/api/config/scopes/groups.canary"), token: operatorTok, body: put(canary, zero),
			status: 409, code: "conflict", msg: []string{"changed by someone else"}},
		{name: "stale revision: conflict", method: "PUT", path: at("/api/config/scopes/groups.canary"), token: operatorTok,
			body: put(canary, func() uint64 { return revs["groups.canary"] - 1 }), status: 409, code: "conflict"},
		{name: "same values: nothing written", method: "PUT", path: at("/api/config/scopes/groups.canary"), token: operatorTok,
			body: put(canary, revOf("groups.canary")), status: 200, check: func(t *testing.T, b map[string]any) {
				if b["written"] != false || rev(b) != revs["groups.canary"] {
					t.Errorf("answer %v", b)
				}
			}},
		{name: "replace the layer", method: "PUT", path: at("/api/config/scopes/groups.canary"), token: operatorTok,
			body: put(map[string]any{"heartbeat_interval": "2m"}, revOf("groups.canary")), status: 200, audit: "config_put", auditKey: "groups.canary", write: true,
			check: func(t *testing.T, b map[string]any) {
				record("groups.canary")(t, b)
				if v, _ := configValue(t, js, "groups.canary"); v != `{"heartbeat_interval":"2m"}` {
					t.Errorf("stored %s: fields left out must be removed", v)
				}
			}},
		{name: "get it", method: "GET", path: at("/api/config/scopes/groups.canary"), token: viewerTok, status: 200, check: func(t *testing.T, b map[string]any) {
			if v, _ := b["values"].(map[string]any); rev(b) != revs["groups.canary"] || len(v) != 1 || v["heartbeat_interval"] != "2m" {
				t.Errorf("answer %v", b)
			}
		}},
		{name: "admin writes global", method: "PUT", path: at("/api/config/scopes/global"), token: adminTok,
			body: put(map[string]any{"inventory_interval": "12h"}, zero), status: 200, audit: "config_put", auditKey: "global", write: true, check: record("global")},
		{name: "static token writes a PC layer", method: "PUT", path: at("/api/config/scopes/pcs.pc-1"), token: adminToken,
			body: put(map[string]any{}, zero), status: 200, audit: "config_put", auditKey: "pcs.pc-1", write: true, check: record("pcs.pc-1")},
		{name: "list in precedence order", method: "GET", path: at("/api/config/scopes"), token: viewerTok, status: 200, check: func(t *testing.T, b map[string]any) {
			scopes, _ := b["scopes"].([]any)
			var got []string
			for _, s := range scopes {
				m := s.(map[string]any)
				got = append(got, fmt.Sprintf("%s@%d", m["key"], rev(m)))
			}
			want := fmt.Sprintf("[global@%d groups.canary@%d pcs.pc-1@%d]", revs["global"], revs["groups.canary"], revs["pcs.pc-1"])
			if fmt.Sprint(got) != want {
				t.Errorf("scopes %v, want %s", got, want)
			}
		}},
		{name: "delete without a revision", method: "DELETE", path: at("/api/config/scopes/groups.canary"), token: operatorTok, status: 400, code: "bad_request", msg: []string{"revision"}},
		{name: "delete at a stale revision", method: "DELETE", path: canaryAt(1), token: operatorTok, status: 409, code: "conflict"},
		{name: "viewer may not delete", method: "DELETE", path: canaryAt(0), token: viewerTok, status: 403, code: "forbidden"},
		{name: "delete", method: "DELETE", path: canaryAt(0), token: operatorTok, status: 200, audit: "config_delete", auditKey: "groups.canary", write: true, check: func(t *testing.T, b map[string]any) {
			if b["deleted"] != true {
				t.Errorf("answer %v", b)
			}
			if _, stored := configValue(t, js, "groups.canary"); stored != 0 {
				t.Errorf("still stored at revision %d", stored)
			}
		}},
		{name: "gone", method: "GET", path: at("/api/config/scopes/groups.canary"), token: viewerTok, status: 404, code: "unknown_scope"},
		{name: "delete what is gone", method: "DELETE", path: canaryAt(0), token: operatorTok, status: 404, code: "unknown_scope"},
		{name: "recreate after delete", method: "PUT", path: at("/api/config/scopes/groups.canary"), token: operatorTok,
			body: put(map[string]any{"inventory_enabled": true}, zero), status: 200, audit: "config_put", auditKey: "groups.canary", write: true, check: record("groups.canary")},
	})
}

// TestConfigScopesShowWhatAgentsCannotUse reads layers written by other
// tools: values agents ignore are reported, never hidden.
func TestConfigScopesShowWhatAgentsCannotUse(t *testing.T) {
	r := newRig(t)
	kv, err := r.srv.JetStream(t).KeyValue(context.Background(), wire.BucketAgentConfig)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"pcs.pc-7":      `{"heartbeat_interval": 5, "colour": "blue"}`,
		"groups.broken": `{"target_version": "1.0.0",`,
		"groups.a.b":    `{}`, // no agent reads it
	} {
		if _, err := kv.Put(context.Background(), k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		key      string
		status   int
		problem  string
		raw      bool
		values   int
		rejected string
	}{
		{key: "pcs.pc-7", status: 200, problem: "heartbeat_interval must be a duration string", values: 2},
		{key: "groups.broken", status: 200, problem: "not a JSON object", raw: true},
		{key: "groups.a.b", status: 400, rejected: "bad_scope"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			status, b := r.do("GET", "/api/config/scopes/"+tt.key, r.token(apiauth.RoleViewer), nil)
			if status != tt.status || errCode(b) != tt.rejected {
				t.Fatalf("= %d %v", status, b)
			}
			if tt.rejected != "" {
				return
			}
			problems, _ := json.Marshal(b["problems"])
			if !strings.Contains(string(problems), tt.problem) {
				t.Errorf("problems %s lack %q", problems, tt.problem)
			}
			if _, hasRaw := b["raw"]; hasRaw != tt.raw {
				t.Errorf("raw present = %v, want %v: %v", hasRaw, tt.raw, b)
			}
			if v, _ := b["values"].(map[string]any); len(v) != tt.values {
				t.Errorf("values %v, want %d fields", v, tt.values)
			}
		})
	}
	status, b := r.do("GET", "/api/config/scopes", r.token(apiauth.RoleViewer), nil)
	if scopes, _ := b["scopes"].([]any); status != 200 || len(scopes) != 2 {
		t.Fatalf("list = %d %v: want the two valid scopes", status, b)
	}
}
