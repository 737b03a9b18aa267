package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kanade-project/kanade/internal/api"
	"github.com/kanade-project/kanade/internal/apiauth"
	"github.com/kanade-project/kanade/internal/broker/brokertest"
)

// clock is a settable clock for the Authenticator, safe to read from the
// HTTP server's goroutines while the test moves it.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// sessionRig serves the API with auth (nil: the usual token and JWT
// secret), over TLS when tls is set.
func sessionRig(t *testing.T, auth *apiauth.Authenticator, tls bool) *rig {
	t.Helper()
	srv := brokertest.Start(t)
	secret := []byte("0123456789abcdef0123456789abcdef")
	if auth == nil {
		auth = &apiauth.Authenticator{Token: adminToken, JWTSecret: secret}
	}
	h, err := api.New(api.Deps{NC: srv.Connect(t), JS: srv.JetStream(t), Auth: auth, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(h)
	if tls {
		hs.StartTLS()
	} else {
		hs.Start()
	}
	t.Cleanup(hs.Close)
	return &rig{t: t, srv: srv, http: hs, secret: secret}
}

// browserReq is a request as the dashboard (or a hostile page) sends it.
type browserReq struct {
	method, path string
	cookie       string // the kanade_session value
	bearer       string
	csrf         bool // X-Kanade-Request: 1
	body         any
}

func (r *rig) send(q browserReq) (*http.Response, map[string]any) {
	r.t.Helper()
	var rd io.Reader
	if q.body != nil {
		b, _ := json.Marshal(q.body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(q.method, r.http.URL+q.path, rd)
	if err != nil {
		r.t.Fatal(err)
	}
	if q.cookie != "" {
		req.AddCookie(&http.Cookie{Name: apiauth.SessionCookie, Value: q.cookie})
	}
	if q.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+q.bearer)
	}
	if q.csrf {
		req.Header.Set(apiauth.CSRFHeader, "1")
	}
	resp, err := r.http.Client().Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp, out
}

// loginCookie logs in with token and returns the session cookie set.
func (r *rig) loginCookie(token string) (*http.Cookie, map[string]any) {
	r.t.Helper()
	resp, body := r.send(browserReq{method: "POST", path: "/api/session", body: map[string]string{"token": token}})
	if resp.StatusCode != 200 {
		r.t.Fatalf("login: %d %v", resp.StatusCode, body)
	}
	for _, c := range resp.Cookies() {
		if c.Name == apiauth.SessionCookie {
			return c, body
		}
	}
	r.t.Fatalf("login set no %s cookie: %v", apiauth.SessionCookie, resp.Header["Set-Cookie"])
	return nil, nil
}

func TestLoginSetsASessionCookie(t *testing.T) {
	plain := sessionRig(t, nil, false)
	longJWT, _ := apiauth.IssueJWT(plain.secret, "alice", apiauth.RoleViewer, 30*time.Hour, time.Now())
	shortJWT, _ := apiauth.IssueJWT(plain.secret, "bob", apiauth.RoleOperator, time.Hour, time.Now())
	for _, tc := range []struct {
		name   string
		r      *rig
		token  string
		actor  string
		role   string
		ttl    time.Duration // a session never outlives the JWT it came from
		secure bool
	}{
		{"static token", plain, adminToken, "token", "admin", 12 * time.Hour, false},
		{"jwt valid for 30 hours", plain, longJWT, "alice", "viewer", 12 * time.Hour, false},
		{"jwt valid for 1 hour", plain, shortJWT, "bob", "operator", time.Hour, false},
		{"static token over TLS", sessionRig(t, nil, true), adminToken, "token", "admin", 12 * time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := time.Now()
			c, body := tc.r.loginCookie(tc.token)
			exp, err := time.Parse(time.RFC3339, body["expires_at"].(string))
			if err != nil || body["actor"] != tc.actor || body["role"] != tc.role || body["auth_disabled"] != false {
				t.Fatalf("login answer %v (%v)", body, err)
			}
			if d := exp.Sub(before); d < tc.ttl-2*time.Second || d > tc.ttl+time.Second {
				t.Errorf("expires_at %v is %v after login, want %v", exp, d, tc.ttl)
			}
			if secs := int(tc.ttl / time.Second); !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Secure != tc.secure ||
				c.MaxAge < secs-2 || c.MaxAge > secs {
				t.Errorf("cookie attributes %+v (raw %q)", c, c.Raw)
			}
			if strings.Contains(c.Value, tc.token) {
				t.Error("the cookie carries the presented token")
			}
			// The cookie alone grants the identity.
			resp, body := tc.r.send(browserReq{method: "GET", path: "/api/session", cookie: c.Value})
			if resp.StatusCode != 200 || body["actor"] != tc.actor || body["role"] != tc.role || body["expires_at"] == nil {
				t.Fatalf("GET /api/session with the cookie: %d %v", resp.StatusCode, body)
			}
			if resp, body := tc.r.send(browserReq{method: "GET", path: "/api/agents/pc-1/groups", cookie: c.Value}); resp.StatusCode != 200 {
				t.Fatalf("GET with the cookie: %d %v", resp.StatusCode, body)
			}
			// A session token is not an API token.
			if resp, body := tc.r.send(browserReq{method: "GET", path: "/api/session", bearer: c.Value}); resp.StatusCode != 401 || errCode(body) != "unauthorized" {
				t.Fatalf("session token as bearer: %d %v", resp.StatusCode, body)
			}
		})
	}
}

func TestSessionCookieNeedsTheCSRFHeaderToChangeThings(t *testing.T) {
	r := sessionRig(t, nil, false)
	admin, _ := r.loginCookie(adminToken)
	run := map[string]any{"target": map[string]any{"pc": "nobody"}, "script": "echo hi"}
	groups := map[string]any{"groups": []string{"canary"}, "revision": 0}
	for _, tc := range []struct {
		name   string
		q      browserReq
		status int
		code   string
	}{
		{"cookie POST without the header", browserReq{method: "POST", path: "/api/run", cookie: admin.Value, body: run}, 403, "csrf"},
		{"cookie PUT without the header", browserReq{method: "PUT", path: "/api/agents/pc-1/groups", cookie: admin.Value, body: groups}, 403, "csrf"},
		{"cookie logout without the header", browserReq{method: "DELETE", path: "/api/session", cookie: admin.Value}, 403, "csrf"},
		{"cookie POST with the header", browserReq{method: "POST", path: "/api/run", cookie: admin.Value, csrf: true, body: run}, 202, ""},
		{"cookie PUT with the header", browserReq{method: "PUT", path: "/api/agents/pc-1/groups", cookie: admin.Value, csrf: true, body: groups}, 200, ""},
		{"bearer POST needs no header", browserReq{method: "POST", path: "/api/run", bearer: adminToken, body: run}, 202, ""},
		{"cookie GET needs no header", browserReq{method: "GET", path: "/api/agents/pc-1/groups", cookie: admin.Value}, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := r.send(tc.q)
			if resp.StatusCode != tc.status || errCode(body) != tc.code {
				t.Fatalf("%d %v, want %d %q", resp.StatusCode, body, tc.status, tc.code)
			}
			if tc.code == "csrf" && !strings.Contains(body["error"].(map[string]any)["message"].(string), apiauth.CSRFHeader) {
				t.Fatalf("the csrf error does not name the header: %v", body)
			}
		})
	}
	// The roles still apply to sessions.
	viewer, _ := r.loginCookie(r.token(apiauth.RoleViewer))
	if resp, body := r.send(browserReq{method: "POST", path: "/api/run", cookie: viewer.Value, csrf: true, body: run}); resp.StatusCode != 403 || errCode(body) != "forbidden" {
		t.Fatalf("viewer session running a script: %d %v", resp.StatusCode, body)
	}
}

func TestLogoutClearsTheCookieAndIsAudited(t *testing.T) {
	r := sessionRig(t, nil, false)
	c, _ := r.loginCookie(adminToken)
	resp, body := r.send(browserReq{method: "DELETE", path: "/api/session", cookie: c.Value, csrf: true})
	if resp.StatusCode != 200 {
		t.Fatalf("logout: %d %v", resp.StatusCode, body)
	}
	var cleared *http.Cookie
	for _, sc := range resp.Cookies() {
		if sc.Name == apiauth.SessionCookie {
			cleared = sc
		}
	}
	if cleared == nil || cleared.MaxAge >= 0 || cleared.Value != "" || !strings.Contains(cleared.Raw, "Max-Age=0") {
		t.Fatalf("logout cookie %+v", cleared)
	}
	// Logging out without a session still clears the cookie, and audits
	// nothing (there is nobody to name).
	if resp, body := r.send(browserReq{method: "DELETE", path: "/api/session"}); resp.StatusCode != 200 {
		t.Fatalf("logout without a session: %d %v", resp.StatusCode, body)
	}
	var got []string
	for _, ev := range auditEvents(t, r.srv.JetStream(t)) {
		got = append(got, ev.Actor+":"+ev.Action)
	}
	if strings.Join(got, " ") != "token:login token:logout" {
		t.Fatalf("audit = %v, want token:login token:logout", got)
	}
}

func TestBadSessionsAndTokensAreRefused(t *testing.T) {
	clk := &clock{}
	secret := []byte("0123456789abcdef0123456789abcdef")
	r := sessionRig(t, &apiauth.Authenticator{Token: adminToken, JWTSecret: secret, Now: clk.now}, false)
	good, _ := r.loginCookie(adminToken)

	// A session made by another server (another secret) and a tampered one.
	other := sessionRig(t, &apiauth.Authenticator{Token: adminToken, JWTSecret: []byte("another-secret-another-secret-xx")}, false)
	foreign, _ := other.loginCookie(adminToken)
	head, rest, _ := strings.Cut(good.Value, ".")
	_, sig, _ := strings.Cut(rest, ".")
	tampered := head + ".eyJzdWIiOiJldmUiLCJyb2xlIjoiYWRtaW4ifQ." + sig

	for _, tc := range []struct {
		name   string
		cookie string
	}{
		{"foreign session", foreign.Value},
		{"tampered session", tampered},
		{"api jwt as the cookie", r.token(apiauth.RoleAdmin)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := r.send(browserReq{method: "GET", path: "/api/session", cookie: tc.cookie})
			if resp.StatusCode != 401 || errCode(body) != "unauthorized" {
				t.Fatalf("%d %v, want 401 unauthorized", resp.StatusCode, body)
			}
		})
	}
	if resp, body := r.send(browserReq{method: "GET", path: "/api/session"}); resp.StatusCode != 401 || errCode(body) != "unauthorized" {
		t.Fatalf("no credentials: %d %v", resp.StatusCode, body)
	}

	// Past its 12 hours the session is refused, without counting towards
	// the failed-attempt limit.
	clk.advance(apiauth.SessionTTL + time.Minute)
	for range 8 {
		resp, body := r.send(browserReq{method: "GET", path: "/api/session", cookie: good.Value})
		if resp.StatusCode != 401 || errCode(body) != "unauthorized" {
			t.Fatalf("expired session: %d %v", resp.StatusCode, body)
		}
	}
	r.loginCookie(adminToken)

	// Wrong tokens at login: 401, then the client is blocked, even for the
	// right token and for bearer requests.
	for i := range 5 {
		resp, body := r.send(browserReq{method: "POST", path: "/api/session", body: map[string]string{"token": "guess"}})
		if resp.StatusCode != 401 || errCode(body) != "unauthorized" {
			t.Fatalf("wrong token %d: %d %v", i+1, resp.StatusCode, body)
		}
		if len(resp.Cookies()) != 0 {
			t.Fatalf("a refused login set a cookie: %v", resp.Header["Set-Cookie"])
		}
	}
	if resp, body := r.send(browserReq{method: "POST", path: "/api/session", body: map[string]string{"token": adminToken}}); resp.StatusCode != 429 || errCode(body) != "rate_limited" {
		t.Fatalf("login after 5 failures: %d %v", resp.StatusCode, body)
	}
	if resp, body := r.send(browserReq{method: "GET", path: "/api/session", bearer: adminToken}); resp.StatusCode != 429 || errCode(body) != "rate_limited" {
		t.Fatalf("bearer after 5 failed logins: %d %v", resp.StatusCode, body)
	}
	clk.advance(2 * time.Minute)
	r.loginCookie(adminToken)
}

func TestDevModeNeedsNoLogin(t *testing.T) {
	r := sessionRig(t, &apiauth.Authenticator{Disabled: true}, false)
	resp, body := r.send(browserReq{method: "GET", path: "/api/session"})
	if resp.StatusCode != 200 || body["auth_disabled"] != true || body["actor"] != "dev" || body["role"] != "admin" || body["expires_at"] != nil {
		t.Fatalf("GET /api/session in dev mode: %d %v", resp.StatusCode, body)
	}
	resp, body = r.send(browserReq{method: "POST", path: "/api/session", body: map[string]string{"token": ""}})
	if resp.StatusCode != 200 || body["auth_disabled"] != true || len(resp.Cookies()) != 0 {
		t.Fatalf("login in dev mode: %d %v, cookies %v", resp.StatusCode, body, resp.Cookies())
	}
}
