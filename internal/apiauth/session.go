package apiauth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	// SessionCookie is the name of the browser session cookie.
	SessionCookie = "kanade_session"
	// SessionTTL is the longest a session lasts. A session made from a JWT
	// ends with that JWT if it expires sooner.
	SessionTTL = 12 * time.Hour
	// CSRFHeader must be "1" on every request authenticated by the session
	// cookie whose method is not GET, HEAD or OPTIONS.
	CSRFHeader = "X-Kanade-Request"

	// sessionAudience keeps session tokens and API JWTs apart: each
	// verifier demands its own audience.
	sessionAudience = "kanade-session"
)

// Session is a browser session issued by Login.
type Session struct {
	// Identity is the caller the session stands for (Method is
	// MethodSession, ExpiresAt the session's end).
	Identity
	// Token is the signed session token, the cookie's value. Empty in dev
	// mode, where no session is needed.
	Token string
}

// sessionClaims are the claims of a session token.
type sessionClaims struct {
	Role string `json:"role"`
	// Src is the credential the session was made from: MethodToken or
	// MethodJWT.
	Src string `json:"src"`
	// TokenMAC binds a session made from the static token to that token:
	// replacing the token ends those sessions, even when the session key
	// (derived from the JWT secret) is unchanged.
	TokenMAC string `json:"tkm,omitempty"`
	jwt.RegisteredClaims
}

// lazyKey is the HMAC key of session tokens, made on first use: derived
// from the JWT secret when there is one (sessions then survive a restart),
// otherwise 32 random bytes for the life of the process (every session
// ends when the server restarts).
type lazyKey struct {
	once sync.Once
	key  []byte
}

func (a *Authenticator) sessionKeyBytes() []byte {
	a.sessionKey.once.Do(func() {
		if len(a.JWTSecret) > 0 {
			// A key of its own, not the secret itself: an API JWT's
			// signature never verifies as a session's, whatever the
			// audience checks do.
			m := hmac.New(sha256.New, a.JWTSecret)
			m.Write([]byte("kanade-session-key-v1"))
			a.sessionKey.key = m.Sum(nil)
			return
		}
		k := make([]byte, 32)
		rand.Read(k) // never fails (crypto/rand since Go 1.24)
		a.sessionKey.key = k
	})
	return a.sessionKey.key
}

func (a *Authenticator) tokenMAC() string {
	m := hmac.New(sha256.New, a.sessionKeyBytes())
	m.Write([]byte("static-token\x00" + a.Token))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// Login checks a token presented by a browser exactly as Authenticate
// checks a bearer token — same checks, same failed-attempt limit per
// client — and issues a session for its identity, valid SessionTTL or
// until the presented JWT expires, whichever is sooner. In dev mode it
// returns the dev identity and no token.
func (a *Authenticator) Login(r *http.Request, token string) (Session, error) {
	if a.Disabled {
		return Session{Identity: devIdentity()}, nil
	}
	now := a.now()
	client := clientAddr(r)
	if a.limiter.blocked(client, now) {
		return Session{}, ErrRateLimited
	}
	if token == "" {
		return Session{}, ErrNoCredentials
	}
	id, err := a.checkToken(client, token, now)
	if err != nil {
		return Session{}, err
	}
	// JWT expiry has one-second precision; so has the session's end.
	exp := now.Add(SessionTTL).Truncate(time.Second)
	if !id.ExpiresAt.IsZero() && id.ExpiresAt.Before(exp) {
		exp = id.ExpiresAt
	}
	c := sessionClaims{Role: id.Role.String(), Src: id.Method, RegisteredClaims: jwt.RegisteredClaims{
		Subject: id.Actor, Audience: jwt.ClaimStrings{sessionAudience},
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(exp),
	}}
	if id.Method == MethodToken {
		c.TokenMAC = a.tokenMAC()
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(a.sessionKeyBytes())
	if err != nil {
		return Session{}, fmt.Errorf("signing the session: %w", err)
	}
	return Session{Identity: Identity{Actor: id.Actor, Role: id.Role, Method: MethodSession, ExpiresAt: exp}, Token: signed}, nil
}

// checkSession verifies a session cookie and applies the CSRF rule. A
// forged or malformed cookie counts as a failed attempt; an authentic one
// that merely expired does not (a browser left open overnight must not
// lock its user out of logging in again).
func (a *Authenticator) checkSession(r *http.Request, client, tok string, now time.Time) (Identity, error) {
	id, err := a.verifySession(tok, now)
	if err != nil {
		if !errors.Is(err, jwt.ErrTokenExpired) {
			a.limiter.fail(client, now)
		}
		return Identity{}, fmt.Errorf("%w: session: %w", ErrBadToken, err)
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		if r.Header.Get(CSRFHeader) != "1" {
			return Identity{}, ErrCSRF
		}
	}
	a.limiter.success(client)
	return id, nil
}

func (a *Authenticator) verifySession(tok string, now time.Time) (Identity, error) {
	var c sessionClaims
	// The signature is checked before the claims: ErrTokenExpired means
	// an authentic session that ended.
	_, err := jwt.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return a.sessionKeyBytes(), nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithAudience(sessionAudience), jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return now }))
	if err != nil {
		return Identity{}, err
	}
	switch c.Src {
	case MethodToken:
		if a.Token == "" || !hmac.Equal([]byte(c.TokenMAC), []byte(a.tokenMAC())) {
			return Identity{}, errors.New("the static token it was made from has changed")
		}
	case MethodJWT:
		if len(a.JWTSecret) == 0 {
			return Identity{}, errors.New("JWT authentication is off")
		}
	default:
		return Identity{}, fmt.Errorf("unknown session source %q", c.Src)
	}
	role, err := ParseRole(c.Role)
	if err != nil {
		return Identity{}, err
	}
	if c.Subject == "" {
		return Identity{}, errors.New("session without subject")
	}
	return Identity{Actor: c.Subject, Role: role, Method: MethodSession, ExpiresAt: c.ExpiresAt.Time.UTC()}, nil
}

// NewSessionCookie is the Set-Cookie of s: HttpOnly, SameSite=Strict,
// Path=/, Max-Age until the session ends, and Secure when r came over TLS
// (directly, or through a proxy that says X-Forwarded-Proto: https —
// trusting that header can only add Secure, never remove it).
func (a *Authenticator) NewSessionCookie(r *http.Request, s Session) *http.Cookie {
	return &http.Cookie{
		Name: SessionCookie, Value: s.Token, Path: "/",
		MaxAge: max(int(s.ExpiresAt.Sub(a.now())/time.Second), 1), Expires: s.ExpiresAt,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: overTLS(r),
	}
}

// ClearSessionCookie is the Set-Cookie that removes the session cookie
// (Max-Age=-1 is sent as Max-Age=0: delete now).
func ClearSessionCookie(r *http.Request) *http.Cookie {
	return &http.Cookie{
		Name: SessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: overTLS(r),
	}
}

func overTLS(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}
