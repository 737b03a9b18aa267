package apiauth

import (
	"errors"
	"net/http/httptest"
	"testing"
	"time"
)

func TestAuthenticate(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	a := &Authenticator{Token: "static-admin-token", JWTSecret: secret, Now: func() time.Time { return now }}
	operator, _ := IssueJWT(secret, "alice", RoleOperator, time.Hour, now)
	expired, _ := IssueJWT(secret, "bob", RoleViewer, time.Hour, now.Add(-2*time.Hour))
	wrongKey, _ := IssueJWT([]byte("another-secret-another-secret-xx"), "eve", RoleAdmin, time.Hour, now)
	for _, tc := range []struct {
		name   string
		header string
		actor  string
		role   Role
		err    error
	}{
		{"static token", "Bearer static-admin-token", "token", RoleAdmin, nil},
		{"jwt operator", "Bearer " + operator, "alice", RoleOperator, nil},
		{"missing", "", "", RoleNone, ErrNoCredentials},
		{"basic auth is not bearer", "Basic dXNlcjpwYXNz", "", RoleNone, ErrNoCredentials},
		{"wrong token", "Bearer nope", "", RoleNone, ErrBadToken},
		{"expired jwt", "Bearer " + expired, "", RoleNone, ErrBadToken},
		{"jwt signed with another key", "Bearer " + wrongKey, "", RoleNone, ErrBadToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/api/agents", nil)
			r.RemoteAddr = "192.0.2.1:1234"
			if tc.header != "" {
				r.Header.Set("Authorization", tc.header)
			}
			id, err := a.Authenticate(r)
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if id.Actor != tc.actor || id.Role != tc.role {
				t.Fatalf("identity = %+v, want %s/%v", id, tc.actor, tc.role)
			}
		})
	}
}

func TestFailedAttemptsAreRateLimited(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	a := &Authenticator{Token: "right", Now: func() time.Time { return now }}
	try := func(addr, tok string) error {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = addr
		r.Header.Set("Authorization", "Bearer "+tok)
		_, err := a.Authenticate(r)
		return err
	}
	for i := range maxFailures {
		if err := try("198.51.100.7:1", "guess"); !errors.Is(err, ErrBadToken) {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
	}
	// Blocked now — even the right token is refused for a while.
	if err := try("198.51.100.7:1", "right"); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("after %d failures: %v, want rate limited", maxFailures, err)
	}
	// Another client is unaffected.
	if err := try("198.51.100.8:1", "right"); err != nil {
		t.Fatalf("other client: %v", err)
	}
	now = now.Add(blockFor + time.Second)
	if err := try("198.51.100.7:1", "right"); err != nil {
		t.Fatalf("after the block expired: %v", err)
	}
}

func TestDisabledIsDevAdmin(t *testing.T) {
	a := &Authenticator{Disabled: true}
	id, err := a.Authenticate(httptest.NewRequest("GET", "/", nil))
	if err != nil || id.Role != RoleAdmin || id.Actor != "dev" {
		t.Fatalf("disabled auth = %+v, %v", id, err)
	}
}
