package api_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/api"
	"github.com/kanade-project/kanade/internal/apiauth"
	"github.com/kanade-project/kanade/internal/projector"
	"github.com/kanade-project/kanade/internal/retry"
	"github.com/kanade-project/kanade/internal/store"
	"github.com/kanade-project/kanade/internal/wire"
)

// newProjectedRig is newRig's broker with a real SQLite projection fed by a
// running projector: what a test publishes to the streams reaches the API
// the way it does in the server.
func newProjectedRig(t *testing.T) *rig {
	t.Helper()
	base := newRig(t)
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "kanade.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	p, err := projector.New(projector.Options{JS: base.srv.JetStream(t), Store: st, Logger: slog.New(slog.DiscardHandler),
		BatchWait: 10 * time.Millisecond, HeartbeatFlush: -1, Retry: retry.Policy{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	// Cleanups run last-in first-out: the projector stops before the
	// store closes.
	t.Cleanup(func() { cancel(); <-done })
	h, err := api.New(api.Deps{NC: base.srv.Connect(t), JS: base.srv.JetStream(t), Auth: &apiauth.Authenticator{Token: adminToken, JWTSecret: base.secret},
		Logger: slog.New(slog.DiscardHandler), Store: st})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	return &rig{t: t, srv: base.srv, http: hs, secret: base.secret, st: st}
}

// publishInventory publishes a full section the way an agent does.
func publishInventory(t *testing.T, r *rig, pc, section string, at time.Time, data any) {
	t.Helper()
	b, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := json.Marshal(wire.InventoryMessage{PCID: pc, Section: section, CollectedAt: at, Hash: pc + "-" + section, Data: b})
	if _, err := r.srv.JetStream(t).Publish(context.Background(), wire.SubjectInventory(pc, section), msg); err != nil {
		t.Fatal(err)
	}
}

// pcsOf lists the pc_id of each match of a search answer.
func pcsOf(body map[string]any) []string {
	out := []string{}
	ms, _ := body["matches"].([]any)
	for _, m := range ms {
		out = append(out, m.(map[string]any)["pc_id"].(string))
	}
	return out
}

func TestInventorySearchOverHTTP(t *testing.T) {
	r := newProjectedRig(t)
	at := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	publishInventory(t, r, "pc-1", wire.SectionSoftware, at, wire.Software{Programs: []wire.Program{
		{Name: "7-Zip", Version: "24.08"}, {Name: "Mozilla Firefox", Version: "128.0", Publisher: "Mozilla"}}})
	publishInventory(t, r, "pc-2", wire.SectionSoftware, at.Add(time.Hour), wire.Software{Programs: []wire.Program{{Name: "Firefox ESR", Version: "115.12"}}})
	publishInventory(t, r, "pc-3", wire.SectionSoftware, at, wire.Software{Programs: []wire.Program{{Name: "Chrome"}}})
	publishInventory(t, r, "pc-1", wire.SectionOS, at, wire.OSInfo{Name: "Windows 11 Pro", Build: "22631"})
	publishInventory(t, r, "pc-2", wire.SectionOS, at, wire.OSInfo{Name: "Ubuntu 24.04 LTS"})

	viewer := r.token(apiauth.RoleViewer)
	search := func(params string) (int, map[string]any) {
		t.Helper()
		return r.do("GET", "/api/inventory?"+params, viewer, nil)
	}
	// The projector is asynchronous: wait, with a deadline, until the last
	// published section is searchable.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, body := search("section=os&field=name&value=ubuntu"); len(pcsOf(body)) == 1 {
			if _, body := search("section=software&field=name&value=chrome"); len(pcsOf(body)) == 1 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the published inventory never became searchable")
		}
		time.Sleep(20 * time.Millisecond)
	}

	t.Run("answer shape", func(t *testing.T) {
		status, body := search("section=software&field=name&value=Firefox")
		if status != 200 || body["section"] != "sw" || body["field"] != "name" || body["value"] != "Firefox" || body["match"] != "contains" || body["next_cursor"] != "" {
			t.Fatalf("%d %v", status, body)
		}
		ms := body["matches"].([]any)
		if len(ms) != 2 {
			t.Fatalf("matches = %v", ms)
		}
		m := ms[0].(map[string]any)
		items := m["items"].([]any)
		item := items[0].(map[string]any)
		data := item["data"].(map[string]any)
		if m["pc_id"] != "pc-1" || m["collected_at"] != "2026-03-01T09:00:00Z" || len(items) != 1 ||
			item["path"] != "$.programs[1]" || data["name"] != "Mozilla Firefox" || data["version"] != "128.0" {
			t.Fatalf("first match = %v", m)
		}
		if m2 := ms[1].(map[string]any); m2["pc_id"] != "pc-2" || m2["collected_at"] != "2026-03-01T10:00:00Z" {
			t.Fatalf("second match = %v", m2)
		}
	})

	for _, tc := range []struct {
		name, params string
		want         []string
	}{
		{"contains ignores case", "section=sw&field=name&value=FIREFOX", []string{"pc-1", "pc-2"}},
		{"exact", "section=sw&field=name&value=mozilla+firefox&match=exact", []string{"pc-1"}},
		{"prefix", "section=sw&field=name&value=firefox&match=prefix", []string{"pc-2"}},
		{"another field", "section=sw&field=version&value=115.&match=prefix", []string{"pc-2"}},
		{"one pc", "section=sw&field=name&value=firefox&pc=pc-2", []string{"pc-2"}},
		{"an object section", "section=os&field=build&value=22631&match=exact", []string{"pc-1"}},
		{"nothing", "section=sw&field=name&value=" + url.QueryEscape("Notepad++"), []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := search(tc.params)
			if got := pcsOf(body); status != 200 || strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("%d %v: pcs %v, want %v", status, body, got, tc.want)
			}
		})
	}

	t.Run("pages by cursor", func(t *testing.T) {
		var got []string
		params := "section=sw&field=name&value=f&limit=1"
		for page := 0; ; page++ {
			if page > 5 {
				t.Fatal("the cursor does not advance")
			}
			status, body := search(params)
			if status != 200 || len(pcsOf(body)) != 1 {
				t.Fatalf("page %d: %d %v", page, status, body)
			}
			got = append(got, pcsOf(body)...)
			next := body["next_cursor"].(string)
			if next == "" {
				break
			}
			params = "section=sw&field=name&value=f&limit=1&cursor=" + url.QueryEscape(next)
		}
		if strings.Join(got, ",") != "pc-1,pc-2" {
			t.Fatalf("pages = %v", got)
		}
	})

	for _, tc := range []struct {
		name, params, want string
	}{
		{"unknown section", "section=sofware&field=name&value=x", `unknown section "sofware"`},
		{"no section", "field=name&value=x", "section is required"},
		{"field outside [A-Za-z0-9_]", "section=sw&field=" + url.QueryEscape("name') OR 1=1 --") + "&value=x", "may contain only letters, digits and '_'"},
		{"field as a path", "section=sw&field=cpu.model&value=x", `field "cpu.model"`},
		{"no value", "section=sw&field=name", "value is required"},
		{"bad match", "section=sw&field=name&value=x&match=regex", `match "regex"`},
		{"bad limit", "section=sw&field=name&value=x&limit=-1", "limit must be"},
		{"bad pc", "section=sw&field=name&value=x&pc=a.b", `pc "a.b"`},
		{"bad cursor", "section=sw&field=name&value=x&cursor=a*b", `cursor "a*b"`},
		{"misspelt parameter", "section=sw&field=name&value=x&mtach=exact", "unknown query parameter(s) mtach"},
	} {
		t.Run("400 "+tc.name, func(t *testing.T) {
			status, body := search(tc.params)
			msg, _ := body["error"].(map[string]any)["message"].(string)
			if status != 400 || errCode(body) != "bad_request" || !strings.Contains(msg, tc.want) {
				t.Fatalf("%d %v, want 400 bad_request naming %q", status, body, tc.want)
			}
		})
	}

	if status, body := r.do("GET", "/api/inventory?section=sw&field=name&value=x", "", nil); status != 401 {
		t.Fatalf("without a token: %d %v", status, body)
	}
}
