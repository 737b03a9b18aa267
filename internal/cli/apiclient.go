package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// Environment variables read by the HTTP API commands.
const (
	EnvAPIURL   = "KANADE_API_URL"
	EnvAPIToken = "KANADE_API_TOKEN"
)

// DefaultAPI is the API URL used when neither --api, KANADE_API_URL nor a
// stored login gives one.
const DefaultAPI = "http://127.0.0.1:8080"

// credentials is what `kanade login` stores.
type credentials struct {
	API   string `json:"api"`
	Token string `json:"token"`
}

// credentialsPath is os.UserConfigDir()/kanade/credentials.json.
func credentialsPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("cannot find the user configuration directory: %w", err)
	}
	return filepath.Join(dir, "kanade", "credentials.json"), nil
}

// loadCredentials returns the stored login; ok is false when there is none.
func loadCredentials() (credentials, bool, error) {
	p, err := credentialsPath()
	if err != nil {
		return credentials{}, false, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return credentials{}, false, nil
	}
	if err != nil {
		return credentials{}, false, err
	}
	var c credentials
	if err := json.Unmarshal(b, &c); err != nil {
		return credentials{}, false, fmt.Errorf("%s is not valid JSON (run `kanade logout` and log in again): %w", p, err)
	}
	return c, true, nil
}

// saveCredentials writes c with mode 0600 in a 0700 directory, atomically.
func saveCredentials(c credentials) (string, error) {
	p, err := credentialsPath()
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	_ = os.Chmod(dir, 0o700)
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, ".credentials-*.json")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return "", err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, p); err != nil {
		return "", err
	}
	return p, nil
}

// apiOpts are the connection settings shared by the HTTP API commands.
type apiOpts struct {
	api string
	ca  string // --api-ca (tls.go)
}

// addAPIFlag adds --api to cmd (persistent, so subcommands inherit it).
func (o *apiOpts) addAPIFlag(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&o.api, "api", "", "API URL (env "+EnvAPIURL+", else the stored login, else "+DefaultAPI+"); the token comes from "+EnvAPIToken+" or `kanade login`")
	cmd.PersistentFlags().StringVar(&o.ca, "api-ca", os.Getenv(EnvAPICA), "PEM file of the CA that signed an https:// API's certificate (env "+EnvAPICA+"); set: only this CA is trusted")
}

// client resolves the API URL and token: --api, then KANADE_API_URL, then
// the stored login, then DefaultAPI; the token from KANADE_API_TOKEN, else
// the stored login when it is for the same URL.
func (o *apiOpts) client() (*apiClient, error) {
	creds, haveCreds, err := loadCredentials()
	if err != nil {
		return nil, &exitError{code: exitFailure, msg: err.Error()}
	}
	base := o.api
	if base == "" {
		base = os.Getenv(EnvAPIURL)
	}
	if base == "" && haveCreds {
		base = creds.API
	}
	if base == "" {
		base = DefaultAPI
	}
	base, err = normalizeAPI(base)
	if err != nil {
		return nil, &exitError{code: exitUsage, msg: err.Error()}
	}
	tok := os.Getenv(EnvAPIToken)
	if tok == "" && haveCreds && strings.TrimRight(creds.API, "/") == base {
		tok = creds.Token
	}
	return o.withCA(newAPIClient(base, tok))
}

func normalizeAPI(s string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("--api %q: expected an http:// or https:// URL", s)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// apiClient talks to the kanade HTTP API with a bearer token.
type apiClient struct {
	base, token string
	hc          *http.Client
}

func newAPIClient(base, token string) *apiClient {
	return &apiClient{base: base, token: token, hc: &http.Client{Timeout: 30 * time.Second}}
}

// apiError is an error answer of the API: {"error":{"code","message"}}.
type apiError struct {
	Status  int
	Code    string
	Message string
	base    string
}

func (e *apiError) Error() string {
	msg := fmt.Sprintf("%s: %s (HTTP %d)", e.Code, e.Message, e.Status)
	if e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden {
		msg += fmt.Sprintf("; log in with `kanade login --api %s` (the token is read from stdin) or set %s", e.base, EnvAPIToken)
	}
	return msg
}

// exit turns an API error into the CLI's exit error: 400 is a usage error
// (exit 2), anything else a failure (exit 1).
func asExit(err error) error {
	if err == nil {
		return nil
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == http.StatusBadRequest {
		return &exitError{code: exitUsage, msg: ae.Error()}
	}
	return &exitError{code: exitFailure, msg: err.Error()}
}

// do sends a request and decodes a 2xx JSON answer into out (when not nil).
// body is a []byte sent as contentType, or any other value sent as JSON.
func (c *apiClient) do(ctx context.Context, method, path string, body any, contentType string, out any) error {
	raw, err := c.doRaw(ctx, method, path, body, contentType)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s %s: unexpected answer: %w", method, path, err)
	}
	return nil
}

func (c *apiClient) doRaw(ctx context.Context, method, path string, body any, contentType string) ([]byte, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(j)
		contentType = "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if hint := tlsHint(err, "the API", "--api-ca", EnvAPICA); hint != "" {
			return nil, fmt.Errorf("cannot connect to the API at %s: %w (%s)", c.base, err, hint)
		}
		return nil, fmt.Errorf("cannot reach the API at %s: %w (start it with `kanade server`, or pass --api / %s)", c.base, err, EnvAPIURL)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return raw, nil
	}
	ae := &apiError{Status: resp.StatusCode, base: c.base}
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(raw, &e) == nil && e.Error.Code != "" {
		ae.Code, ae.Message = e.Error.Code, e.Error.Message
	} else {
		ae.Code = strings.ToLower(strings.ReplaceAll(http.StatusText(resp.StatusCode), " ", "_"))
		ae.Message = strings.TrimSpace(string(raw))
		if len(ae.Message) > 200 {
			ae.Message = ae.Message[:200] + "…"
		}
	}
	return nil, ae
}
