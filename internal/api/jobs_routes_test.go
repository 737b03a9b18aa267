package api_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kanade-project/kanade/internal/api"
	"github.com/kanade-project/kanade/internal/apiauth"
	"github.com/kanade-project/kanade/internal/fleetclient"
	"github.com/kanade-project/kanade/internal/jobs"
	"github.com/kanade-project/kanade/internal/wire"
)

// newJobsRig is newRig's broker with the job catalog and executor the
// server gives the API (no store: the job endpoints do not need it).
func newJobsRig(t *testing.T) *rig {
	t.Helper()
	base := newRig(t)
	ctx := context.Background()
	js := base.srv.JetStream(t)
	if err := jobs.Ensure(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	catalog, err := jobs.OpenCatalog(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	fc, err := fleetclient.New(base.srv.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	executor, err := jobs.NewExecutor(ctx, fc, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := api.New(api.Deps{NC: base.srv.Connect(t), JS: js, Auth: &apiauth.Authenticator{Token: adminToken, JWTSecret: base.secret},
		Logger: slog.New(slog.DiscardHandler), Jobs: &api.Jobs{Catalog: catalog, Executor: executor}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	return &rig{t: t, srv: base.srv, http: hs, secret: base.secret}
}

// TestJobScriptStatusOverHTTP follows one job through revocations made by
// the API and by hand in KV script_status: GET /api/jobs/{job} reports
// what an agent's gate would decide.
func TestJobScriptStatusOverHTTP(t *testing.T) {
	r := newJobsRig(t)
	ctx := context.Background()
	kv, err := r.srv.JetStream(t).KeyValue(ctx, wire.BucketScriptStatus)
	if err != nil {
		t.Fatal(err)
	}
	// POST /api/jobs takes the YAML manifest as the body.
	req, err := http.NewRequest("POST", r.http.URL+"/api/jobs", strings.NewReader("id: patch\nversion: \"1\"\nexecute:\n  shell: sh\n  script: echo hi\n"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("create the job: %s", resp.Status)
	}
	operator, viewer := r.token(apiauth.RoleOperator), r.token(apiauth.RoleViewer)
	for _, step := range []struct {
		name   string
		change func(t *testing.T)
		want   string
	}{
		{"never revoked", nil, "active"},
		{"revoked through the API", func(t *testing.T) {
			if status, body := r.do("POST", "/api/jobs/patch/revoke", operator, nil); status != 200 {
				t.Fatalf("revoke: %d %v", status, body)
			}
		}, "revoked"},
		{"unrevoked through the API", func(t *testing.T) {
			if status, body := r.do("POST", "/api/jobs/patch/unrevoke", operator, nil); status != 200 {
				t.Fatalf("unrevoke: %d %v", status, body)
			}
		}, "active"},
		{"revoked by hand (kanade job stop)", func(t *testing.T) {
			if _, err := kv.Put(ctx, "patch", []byte(wire.ScriptRevoked)); err != nil {
				t.Fatal(err)
			}
		}, "revoked"},
		{"key deleted", func(t *testing.T) {
			if err := kv.Delete(ctx, "patch"); err != nil {
				t.Fatal(err)
			}
		}, "active"},
		// The agents refuse only REVOKED; anything else runs.
		{"a value the agents do not know", func(t *testing.T) {
			if _, err := kv.Put(ctx, "patch", []byte("revoked-ish")); err != nil {
				t.Fatal(err)
			}
		}, "active"},
	} {
		t.Run(step.name, func(t *testing.T) {
			if step.change != nil {
				step.change(t)
			}
			status, body := r.do("GET", "/api/jobs/patch", viewer, nil)
			if status != 200 || body["script_status"] != step.want {
				t.Fatalf("GET /api/jobs/patch: %d %v, want script_status %q", status, body, step.want)
			}
			// The entry's own fields are where they were.
			m, _ := body["Manifest"].(map[string]any)
			if m["id"] != "patch" || body["Revision"] != 1.0 || body["YAML"] == nil {
				t.Fatalf("entry fields: %v", body)
			}
		})
	}
	if status, body := r.do("GET", "/api/jobs/nope", viewer, nil); status != 404 || errCode(body) != "unknown_job" {
		t.Fatalf("unknown job: %d %v", status, body)
	}
}
