package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/agent"
	"github.com/kanade-project/kanade/internal/api"
	"github.com/kanade-project/kanade/internal/apiauth"
	"github.com/kanade-project/kanade/internal/broker/brokertest"
	"github.com/kanade-project/kanade/internal/store"
	"github.com/kanade-project/kanade/internal/wire"
)

type rig struct {
	t      *testing.T
	srv    *brokertest.Server
	http   *httptest.Server
	secret []byte
	// st is the projection behind the API (newProjectedRig only).
	st *store.Store
}

const adminToken = "test-admin-token-0123456789"

func newRig(t *testing.T) *rig {
	srv := brokertest.Start(t)
	secret := []byte("0123456789abcdef0123456789abcdef")
	h, err := api.New(api.Deps{NC: srv.Connect(t), JS: srv.JetStream(t), Auth: &apiauth.Authenticator{Token: adminToken, JWTSecret: secret}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	return &rig{t: t, srv: srv, http: hs, secret: secret}
}

func (r *rig) token(role apiauth.Role) string {
	tok, err := apiauth.IssueJWT(r.secret, "tester-"+role.String(), role, time.Hour, time.Now())
	if err != nil {
		r.t.Fatal(err)
	}
	return tok
}

// do sends a request and decodes the JSON answer.
func (r *rig) do(method, path, token string, body any) (int, map[string]any) {
	r.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, r.http.URL+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func errCode(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func TestAuthAndRoles(t *testing.T) {
	r := newRig(t)
	run := map[string]any{"target": map[string]any{"pc": "nobody"}, "script": "echo hi"}
	for _, tc := range []struct {
		name   string
		token  string
		status int
		code   string
	}{
		{"no token", "", 401, "unauthorized"},
		{"wrong token", "nope", 401, "unauthorized"},
		{"viewer may not run", r.token(apiauth.RoleViewer), 403, "forbidden"},
		{"operator may run", r.token(apiauth.RoleOperator), 202, ""},
		{"static admin token", adminToken, 202, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := r.do("POST", "/api/run", tc.token, run)
			if status != tc.status || errCode(body) != tc.code {
				t.Fatalf("status %d body %v, want %d %q", status, body, tc.status, tc.code)
			}
		})
	}
}

func TestBadInputIsA4xxWithAStableCode(t *testing.T) {
	r := newRig(t)
	for _, tc := range []struct {
		name string
		body any
		code string
	}{
		{"two targets", map[string]any{"target": map[string]any{"pc": "a", "all": true}, "script": "x"}, "bad_target"},
		{"no script", map[string]any{"target": map[string]any{"all": true}}, "bad_request"},
		{"bad shell", map[string]any{"target": map[string]any{"all": true}, "script": "x", "shell": "fish"}, "bad_shell"},
		{"bad duration", map[string]any{"target": map[string]any{"all": true}, "script": "x", "timeout": "soon"}, "bad_duration"},
		{"unknown field", map[string]any{"target": map[string]any{"all": true}, "script": "x", "scirpt": "y"}, "bad_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := r.do("POST", "/api/run", adminToken, tc.body)
			if status != 400 || errCode(body) != tc.code {
				t.Fatalf("status %d body %v, want 400 %q", status, body, tc.code)
			}
		})
	}
	// Nothing was published or audited for any of them.
	if n := streamMsgs(t, r.srv.JetStream(t), wire.StreamAudit); n != 0 {
		t.Fatalf("%d audit records after rejected requests", n)
	}
}

func streamMsgs(t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestRunKillRevokeAreAuditedAndReachAgents(t *testing.T) {
	r := newRig(t)
	a, err := agent.New(agent.Config{ID: "api-pc", NATSURLs: []string{r.srv.URL()}, DataDir: t.TempDir(), Version: "test", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	nc := r.srv.Connect(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if status, _ := r.do("POST", "/api/agents/api-pc/ping", adminToken, nil); status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("agent never answered ping through the API")
		}
		time.Sleep(20 * time.Millisecond)
	}

	results, err := nc.SubscribeSync("results.>")
	if err != nil {
		t.Fatal(err)
	}
	status, body := r.do("POST", "/api/run", r.token(apiauth.RoleOperator), map[string]any{"target": map[string]any{"pc": "api-pc"}, "script": "sleep 30"})
	if status != 202 {
		t.Fatalf("run: %d %v", status, body)
	}
	execID := body["exec_id"].(string)
	// The kill latch is armed right after admission; retry the kill until
	// the result shows it landed.
	var res wire.ExecResult
	for res.ExecID == "" {
		if status, body := r.do("POST", "/api/executions/"+execID+"/kill", adminToken, nil); status != 202 {
			t.Fatalf("kill: %d %v", status, body)
		}
		m, err := results.NextMsg(500 * time.Millisecond)
		if err != nil {
			continue
		}
		_ = json.Unmarshal(m.Data, &res)
	}
	if res.ExitCode != wire.ExitKilled || !strings.Contains(res.Stderr, "killed by operator") {
		t.Fatalf("result after kill = %+v", res)
	}

	if status, body := r.do("POST", "/api/jobs/patch-42/revoke", adminToken, nil); status != 200 {
		t.Fatalf("revoke: %d %v", status, body)
	}
	kv, _ := r.srv.JetStream(t).KeyValue(context.Background(), wire.BucketScriptStatus)
	if e, err := kv.Get(context.Background(), "patch-42"); err != nil || string(e.Value()) != wire.ScriptRevoked {
		t.Fatalf("script_status/patch-42 = %v, %v", e, err)
	}

	// Every mutation left an audit record naming the actor.
	s, _ := r.srv.JetStream(t).Stream(context.Background(), wire.StreamAudit)
	var actions []string
	for seq := uint64(1); ; seq++ {
		m, err := s.GetMsg(context.Background(), seq)
		if err != nil {
			break
		}
		var ev wire.AuditEvent
		_ = json.Unmarshal(m.Data, &ev)
		actions = append(actions, ev.Actor+":"+ev.Action+":"+ev.Target)
	}
	joined := strings.Join(actions, " ")
	for _, want := range []string{"tester-operator:run:" + execID, "token:kill:" + execID, "token:revoke:patch-42"} {
		if !strings.Contains(joined, want) {
			t.Errorf("audit lacks %q: %v", want, actions)
		}
	}
}

func TestGroupsWriteIsCompareAndSet(t *testing.T) {
	r := newRig(t)
	status, body := r.do("PUT", "/api/agents/pc-1/groups", adminToken, map[string]any{"groups": []string{"b", "a", "a"}, "revision": 0})
	if status != 200 {
		t.Fatalf("first put: %d %v", status, body)
	}
	rev := body["revision"].(float64)
	// A writer that read before this change is refused.
	status, body = r.do("PUT", "/api/agents/pc-1/groups", adminToken, map[string]any{"groups": []string{"c"}, "revision": 0})
	if status != 409 || errCode(body) != "conflict" {
		t.Fatalf("stale put: %d %v, want 409 conflict", status, body)
	}
	status, body = r.do("GET", "/api/agents/pc-1/groups", r.token(apiauth.RoleViewer), nil)
	if status != 200 || body["revision"].(float64) != rev || len(body["groups"].([]any)) != 2 {
		t.Fatalf("groups after the refused write: %v", body)
	}
	if status, body := r.do("PUT", "/api/agents/pc-1/groups", adminToken, map[string]any{"groups": []string{"no.dots"}, "revision": rev}); status != 400 || errCode(body) != "bad_group" {
		t.Fatalf("bad group: %d %v", status, body)
	}
}

func TestMetricsAndHealth(t *testing.T) {
	r := newRig(t)
	r.do("GET", "/api/agents/x/groups", adminToken, nil)
	resp, err := http.Get(r.http.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `kanade_http_request_duration_seconds_count{route="GET /api/agents/{pc}/groups",code="200"} 1`) {
		t.Fatalf("metrics lack the request histogram:\n%s", b)
	}
	if status, body := r.do("GET", "/healthz", "", nil); status != 200 || body["ok"] != true {
		t.Fatalf("healthz: %d %v", status, body)
	}
}
