package apiauth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const testAddr = "192.0.2.10:5000"

func login(t *testing.T, a *Authenticator, token string) Session {
	t.Helper()
	r := httptest.NewRequest("POST", "/api/session", nil)
	r.RemoteAddr = testAddr
	s, err := a.Login(r, token)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	return s
}

// request builds a request from testAddr with optional cookie and headers
// ("Name: value").
func request(method, cookie string, headers ...string) *http.Request {
	r := httptest.NewRequest(method, "/api/agents", nil)
	r.RemoteAddr = testAddr
	if cookie != "" {
		r.AddCookie(&http.Cookie{Name: SessionCookie, Value: cookie})
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		r.Header.Set(k, v)
	}
	return r
}

func TestSessionsStandForTheirLoginIdentity(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	a := &Authenticator{Token: "static-admin-token", JWTSecret: secret, Now: func() time.Time { return now }}
	viewerJWT, _ := IssueJWT(secret, "alice", RoleViewer, 30*time.Hour, now)
	shortJWT, _ := IssueJWT(secret, "bob", RoleOperator, time.Hour, now)

	fromToken := login(t, a, "static-admin-token")
	fromJWT := login(t, a, viewerJWT)
	fromShort := login(t, a, shortJWT)
	for _, tc := range []struct {
		name  string
		s     Session
		actor string
		role  Role
		exp   time.Time
	}{
		{"static token", fromToken, "token", RoleAdmin, now.Add(SessionTTL)},
		{"jwt longer than a session", fromJWT, "alice", RoleViewer, now.Add(SessionTTL)},
		{"jwt that ends sooner", fromShort, "bob", RoleOperator, now.Add(time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.s.Actor != tc.actor || tc.s.Role != tc.role || tc.s.Method != MethodSession || !tc.s.ExpiresAt.Equal(tc.exp) {
				t.Fatalf("session = %+v, want %s/%v until %v", tc.s.Identity, tc.actor, tc.role, tc.exp)
			}
			if strings.Contains(tc.s.Token, "static-admin-token") || tc.s.Token == viewerJWT || tc.s.Token == shortJWT {
				t.Fatal("the session token carries the presented token")
			}
			id, err := a.Authenticate(request("GET", tc.s.Token))
			if err != nil || id.Actor != tc.actor || id.Role != tc.role || id.Method != MethodSession || !id.ExpiresAt.Equal(tc.exp) {
				t.Fatalf("cookie authenticates as %+v, %v", id, err)
			}
		})
	}
}

func TestSessionCookieRules(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	a := &Authenticator{Token: "static-admin-token", JWTSecret: secret, Now: func() time.Time { return now }}
	s := login(t, a, "static-admin-token").Token
	apiJWT, _ := IssueJWT(secret, "alice", RoleAdmin, time.Hour, now)
	otherServer := &Authenticator{Token: "static-admin-token", JWTSecret: []byte("another-secret-another-secret-xx"), Now: a.Now}
	forged := login(t, otherServer, "static-admin-token").Token
	rotated := &Authenticator{Token: "the-new-token", JWTSecret: secret, Now: a.Now}
	for _, tc := range []struct {
		name string
		auth *Authenticator
		req  *http.Request
		err  error
	}{
		{"GET needs no header", a, request("GET", s), nil},
		{"HEAD needs no header", a, request("HEAD", s), nil},
		{"POST without the CSRF header", a, request("POST", s), ErrCSRF},
		{"DELETE with a wrong CSRF header", a, request("DELETE", s, CSRFHeader+": yes"), ErrCSRF},
		{"POST with the CSRF header", a, request("POST", s, CSRFHeader+": 1"), nil},
		{"a bearer POST needs no CSRF header", a, request("POST", "", "Authorization: Bearer static-admin-token"), nil},
		{"a proxy's Basic auth does not hide the cookie", a, request("GET", s, "Authorization: Basic dXNlcjpwYXNz"), nil},
		{"a bearer header decides alone", a, request("GET", s, "Authorization: Bearer wrong"), ErrBadToken},
		{"session token as bearer", a, request("GET", "", "Authorization: Bearer "+s), ErrBadToken},
		{"api jwt as cookie", a, request("GET", apiJWT), ErrBadToken},
		{"session of another server", a, request("GET", forged), ErrBadToken},
		{"garbage cookie", a, request("GET", "not-a-session"), ErrBadToken},
		{"static token replaced since login", rotated, request("GET", s), ErrBadToken},
		{"no cookie, no header", a, request("GET", ""), ErrNoCredentials},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.auth.limiter.success("192.0.2.10") // each case starts with a clean count
			_, err := tc.auth.Authenticate(tc.req)
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
		})
	}
}

func TestSessionWithoutJWTSecretEndsWithTheProcess(t *testing.T) {
	a := &Authenticator{Token: "static-admin-token"}
	s := login(t, a, "static-admin-token")
	if _, err := a.Authenticate(request("GET", s.Token)); err != nil {
		t.Fatalf("same server: %v", err)
	}
	// A restart: same token, new random session key.
	restarted := &Authenticator{Token: "static-admin-token"}
	if _, err := restarted.Authenticate(request("GET", s.Token)); !errors.Is(err, ErrBadToken) {
		t.Fatalf("after a restart: %v, want ErrBadToken", err)
	}
	if _, err := a.Authenticate(request("GET", "", "Authorization: Bearer "+s.Token)); !errors.Is(err, ErrBadToken) {
		t.Fatalf("session token as bearer: %v, want ErrBadToken", err)
	}
}

func TestExpiredSessionsAreRefusedButNotCountedAsGuesses(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	a := &Authenticator{Token: "static-admin-token", JWTSecret: secret, Now: func() time.Time { return now }}
	s := login(t, a, "static-admin-token").Token
	now = now.Add(SessionTTL + time.Second)
	for i := range 2 * maxFailures {
		_, err := a.Authenticate(request("GET", s))
		if !errors.Is(err, ErrBadToken) || !errors.Is(err, jwt.ErrTokenExpired) {
			t.Fatalf("expired session, try %d: %v", i+1, err)
		}
	}
	// The browser's user can still log in again.
	login(t, a, "static-admin-token")

	// Forged cookies are guesses.
	for range maxFailures {
		a.Authenticate(request("GET", "forged.cookie.value"))
	}
	if _, err := a.Authenticate(request("GET", "", "Authorization: Bearer static-admin-token")); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("after %d forged cookies: %v, want rate limited", maxFailures, err)
	}
}

func TestLoginSharesTheFailedAttemptLimit(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	a := &Authenticator{Token: "right", Now: func() time.Time { return now }}
	r := request("POST", "")
	for i := range maxFailures {
		if _, err := a.Login(r, "guess"); !errors.Is(err, ErrBadToken) {
			t.Fatalf("login %d: %v", i+1, err)
		}
	}
	if _, err := a.Login(r, "right"); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("login after %d failures: %v, want rate limited", maxFailures, err)
	}
	if _, err := a.Authenticate(request("GET", "", "Authorization: Bearer right")); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("bearer after %d failed logins: %v, want rate limited", maxFailures, err)
	}
	if _, err := a.Login(r, ""); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("empty token while blocked: %v", err)
	}
	now = now.Add(blockFor + time.Second)
	if _, err := a.Login(r, ""); !errors.Is(err, ErrNoCredentials) {
		t.Fatalf("empty token: %v, want ErrNoCredentials", err)
	}
	if _, err := a.Login(r, "right"); err != nil {
		t.Fatalf("after the block: %v", err)
	}
}

func TestDevModeLoginNeedsNoSession(t *testing.T) {
	a := &Authenticator{Disabled: true}
	s, err := a.Login(request("POST", ""), "")
	if err != nil || s.Token != "" || s.Actor != "dev" || s.Role != RoleAdmin {
		t.Fatalf("dev login = %+v, %v", s, err)
	}
}

func TestSessionCookieAttributes(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	a := &Authenticator{Token: "t", Now: func() time.Time { return now }}
	s := login(t, a, "t")
	for _, tc := range []struct {
		name   string
		header string
		secure bool
	}{
		{"plain http", "", false},
		{"behind a TLS proxy", "X-Forwarded-Proto: https", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := request("POST", "", tc.header)
			set := a.NewSessionCookie(r, s).String()
			for _, want := range []string{SessionCookie + "=" + s.Token, "Path=/", "Max-Age=43200", "HttpOnly", "SameSite=Strict"} {
				if !strings.Contains(set, want) {
					t.Errorf("Set-Cookie %q lacks %q", set, want)
				}
			}
			if strings.Contains(set, "Secure") != tc.secure {
				t.Errorf("Set-Cookie %q: Secure should be %v", set, tc.secure)
			}
			clear := ClearSessionCookie(r).String()
			if !strings.Contains(clear, "Max-Age=0") || !strings.Contains(clear, SessionCookie+"=;") {
				t.Errorf("clearing Set-Cookie %q", clear)
			}
		})
	}
}
