// Package apiauth authenticates HTTP API callers: a static bearer token
// (role admin) or an HS256 JWT with audience "kanade" and a role claim
// (viewer < operator < admin). Secrets come from the environment or a
// root-only file, never from the config file. Comparisons are constant
// time, and failed attempts are rate limited per client address so a
// token cannot be guessed online.
//
// Browsers (the dashboard) trade one of those tokens for a session (Login):
// an HS256 JWT of the server's own, audience "kanade-session", carried in
// the HttpOnly, SameSite=Strict cookie kanade_session. The presented token
// is never stored in the browser. Session and API tokens have distinct
// audiences and signing keys, so neither is accepted as the other. A
// request authenticated by the cookie that may change something (any
// method but GET, HEAD and OPTIONS) must carry X-Kanade-Request: 1, which
// a cross-site form cannot set (ErrCSRF otherwise).
package apiauth

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Role orders what a caller may do.
type Role int

const (
	RoleNone Role = iota
	RoleViewer
	RoleOperator
	RoleAdmin
)

func (r Role) String() string {
	switch r {
	case RoleViewer:
		return "viewer"
	case RoleOperator:
		return "operator"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

// ParseRole maps a claim to a Role.
func ParseRole(s string) (Role, error) {
	switch s {
	case "viewer":
		return RoleViewer, nil
	case "operator":
		return RoleOperator, nil
	case "admin":
		return RoleAdmin, nil
	}
	return RoleNone, fmt.Errorf("unknown role %q: expected viewer, operator or admin", s)
}

// Identity is an authenticated caller.
type Identity struct {
	Actor string
	Role  Role
	// Method is how the caller authenticated: MethodToken, MethodJWT,
	// MethodSession or MethodDev.
	Method string
	// ExpiresAt is when the credential stops being accepted; zero for the
	// static token and dev mode.
	ExpiresAt time.Time
}

// Methods of an Identity.
const (
	MethodToken   = "token"
	MethodJWT     = "jwt"
	MethodSession = "session"
	MethodDev     = "dev"
)

// Errors of Authenticate.
var (
	ErrNoCredentials = errors.New("missing credentials: send Authorization: Bearer <token>, or log in (POST /api/session) for a session cookie")
	ErrBadToken      = errors.New("invalid token")
	ErrRateLimited   = errors.New("too many failed attempts; wait and retry")
	ErrCSRF          = errors.New("a request authenticated by the session cookie must carry the header " + CSRFHeader + ": 1 unless it is a GET, HEAD or OPTIONS (cross-site forms cannot set it)")
)

// Authenticator checks bearer credentials and session cookies. Disabled
// (dev mode) lets every request through as admin "dev". Use it through a
// pointer: it holds the failure counts and the session key.
type Authenticator struct {
	Disabled bool
	// Token is the static admin token (empty: none).
	Token string
	// JWTSecret verifies HS256 tokens (empty: JWT off).
	JWTSecret []byte
	// Now is the clock (tests).
	Now func() time.Time

	limiter    failureLimiter
	sessionKey lazyKey
}

func (a *Authenticator) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func devIdentity() Identity { return Identity{Actor: "dev", Role: RoleAdmin, Method: MethodDev} }

// Authenticate returns the caller's identity. An Authorization: Bearer
// header is checked when present (and decides alone); otherwise the
// session cookie is. Any other Authorization scheme (a reverse proxy's
// Basic auth, say) is ignored.
func (a *Authenticator) Authenticate(r *http.Request) (Identity, error) {
	if a.Disabled {
		return devIdentity(), nil
	}
	now := a.now()
	client := clientAddr(r)
	if a.limiter.blocked(client, now) {
		return Identity{}, ErrRateLimited
	}
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		if tok == "" {
			return Identity{}, ErrNoCredentials
		}
		return a.checkToken(client, tok, now)
	}
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return Identity{}, ErrNoCredentials
	}
	return a.checkSession(r, client, c.Value, now)
}

// checkToken checks a bearer token (static or JWT) and counts the attempt.
func (a *Authenticator) checkToken(client, tok string, now time.Time) (Identity, error) {
	if a.Token != "" && constantTimeEqual(tok, a.Token) {
		a.limiter.success(client)
		return Identity{Actor: "token", Role: RoleAdmin, Method: MethodToken}, nil
	}
	if len(a.JWTSecret) > 0 && strings.Count(tok, ".") == 2 {
		id, err := a.verifyJWT(tok, now)
		if err == nil {
			a.limiter.success(client)
			return id, nil
		}
		a.limiter.fail(client, now)
		return Identity{}, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	a.limiter.fail(client, now)
	return Identity{}, ErrBadToken
}

// Claims of a kanade JWT.
type Claims struct {
	Role string `json:"role"`
	jwt.RegisteredClaims
}

func (a *Authenticator) verifyJWT(tok string, now time.Time) (Identity, error) {
	var c Claims
	_, err := jwt.ParseWithClaims(tok, &c, func(t *jwt.Token) (any, error) { return a.JWTSecret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithAudience("kanade"), jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return now }))
	if err != nil {
		return Identity{}, err
	}
	role, err := ParseRole(c.Role)
	if err != nil {
		return Identity{}, err
	}
	actor := c.Subject
	if actor == "" {
		actor = "jwt"
	}
	return Identity{Actor: actor, Role: role, Method: MethodJWT, ExpiresAt: c.ExpiresAt.Time.UTC()}, nil
}

// IssueJWT signs a token for subject with role, valid for ttl.
func IssueJWT(secret []byte, subject string, role Role, ttl time.Duration, now time.Time) (string, error) {
	c := Claims{Role: role.String(), RegisteredClaims: jwt.RegisteredClaims{
		Subject: subject, Audience: jwt.ClaimStrings{"kanade"},
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}

// constantTimeEqual compares through HMAC digests so neither the content
// nor the length of the secret leaks through timing.
func constantTimeEqual(a, b string) bool {
	key := []byte("kanade-token-compare")
	ma, mb := hmac.New(sha256.New, key), hmac.New(sha256.New, key)
	ma.Write([]byte(a))
	mb.Write([]byte(b))
	return hmac.Equal(ma.Sum(nil), mb.Sum(nil))
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// failureLimiter blocks a client for a while after repeated failures.
type failureLimiter struct {
	mu      sync.Mutex
	clients map[string]*failures
}

type failures struct {
	count int
	until time.Time
}

const (
	maxFailures = 5
	blockFor    = time.Minute
)

func (l *failureLimiter) blocked(client string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.clients[client]
	return ok && now.Before(f.until)
}

func (l *failureLimiter) fail(client string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.clients == nil {
		l.clients = map[string]*failures{}
	}
	f := l.clients[client]
	if f == nil {
		if len(l.clients) > 10_000 {
			// Bound memory under a spray from many addresses.
			clear(l.clients)
		}
		f = &failures{}
		l.clients[client] = f
	}
	f.count++
	if f.count >= maxFailures {
		f.until = now.Add(blockFor)
		f.count = 0
	}
}

func (l *failureLimiter) success(client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.clients, client)
}
