package dashboard_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kanade-project/kanade/internal/dashboard"
)

// pagePaths are examples of every page of the application.
func pagePaths() []string {
	return []string{"/", "/login", "/agents", "/agents/pc-1", "/agents/PC%2F1", "/run", "/executions", "/executions/x1",
		"/jobs", "/jobs/patch", "/schedules", "/rollout", "/events", "/audit"}
}

func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	h, err := dashboard.New()
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

func get(t *testing.T, url string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func checkSecurityHeaders(t *testing.T, what string, h http.Header) {
	t.Helper()
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("%s: Content-Security-Policy %q lacks %q", what, csp, want)
		}
	}
	for _, bad := range []string{"unsafe-inline", "unsafe-eval", "http:", "https:", "*"} {
		if strings.Contains(csp, bad) {
			t.Errorf("%s: Content-Security-Policy %q allows %q", what, csp, bad)
		}
	}
	for k, want := range map[string]string{"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY"} {
		if got := h.Get(k); got != want {
			t.Errorf("%s: %s = %q, want %q", what, k, got, want)
		}
	}
}

// TestEveryPageServesTheApp: every page path answers the HTML shell (so a
// bookmark or a reload works), with the security headers.
func TestEveryPageServesTheApp(t *testing.T) {
	s := newServer(t)
	for _, p := range pagePaths() {
		resp, body := get(t, s.URL+p, nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d, want 200", p, resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("GET %s: Content-Type %q", p, ct)
		}
		if !strings.Contains(body, `<script type="module" src="/assets/js/app.js">`) {
			t.Errorf("GET %s: the answer is not the application shell", p)
		}
		checkSecurityHeaders(t, "GET "+p, resp.Header)
	}
}

func TestResponses(t *testing.T) {
	s := newServer(t)
	tests := []struct {
		name, method, path string
		header             map[string]string
		status             int
		contentType        string
		bodyHas            string
	}{
		{name: "unknown page: the shell with 404", method: "GET", path: "/no/such/page", status: 404, contentType: "text/html", bodyHas: "/assets/js/app.js"},
		{name: "item of a page without items", method: "GET", path: "/run/x", status: 404, contentType: "text/html"},
		{name: "too deep", method: "GET", path: "/agents/a/b", status: 404, contentType: "text/html"},
		{name: "module", method: "GET", path: "/assets/js/app.js", status: 200, contentType: "text/javascript", bodyHas: "boot()"},
		{name: "page module", method: "GET", path: "/assets/js/pages/run.js", status: 200, contentType: "text/javascript"},
		{name: "stylesheet", method: "GET", path: "/assets/app.css", status: 200, contentType: "text/css", bodyHas: "prefers-color-scheme"},
		{name: "icon", method: "GET", path: "/assets/icon.svg", status: 200, contentType: "image/svg+xml"},
		{name: "unknown asset", method: "GET", path: "/assets/nope.js", status: 404, contentType: "text/plain"},
		{name: "the shell is not an asset", method: "GET", path: "/assets/index.html", status: 404},
		{name: "asset directory", method: "GET", path: "/assets/js/", status: 404},
		{name: "head", method: "HEAD", path: "/agents", status: 200, contentType: "text/html"},
		{name: "post", method: "POST", path: "/agents", status: 405},
		{name: "delete asset", method: "DELETE", path: "/assets/app.css", status: 405},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, s.URL+tc.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if ct := resp.Header.Get("Content-Type"); tc.contentType != "" && !strings.HasPrefix(ct, tc.contentType) {
				t.Errorf("Content-Type %q, want %s", ct, tc.contentType)
			}
			if tc.bodyHas != "" && !strings.Contains(string(b), tc.bodyHas) {
				t.Errorf("body lacks %q", tc.bodyHas)
			}
			checkSecurityHeaders(t, tc.method+" "+tc.path, resp.Header)
		})
	}
}

// TestAssetsRevalidate: assets carry an ETag and answer 304 to it, so a
// browser that revalidates every load (modules are not fingerprinted)
// transfers nothing when nothing changed.
func TestAssetsRevalidate(t *testing.T) {
	s := newServer(t)
	for _, p := range []string{"/assets/js/app.js", "/assets/app.css", "/"} {
		resp, _ := get(t, s.URL+p, nil)
		etag := resp.Header.Get("ETag")
		if etag == "" || resp.Header.Get("Cache-Control") != "no-cache" {
			t.Fatalf("GET %s: ETag %q, Cache-Control %q", p, etag, resp.Header.Get("Cache-Control"))
		}
		again, body := get(t, s.URL+p, map[string]string{"If-None-Match": etag})
		if again.StatusCode != http.StatusNotModified || body != "" {
			t.Errorf("GET %s with If-None-Match: %d, %d bytes; want 304 and nothing", p, again.StatusCode, len(body))
		}
	}
}

// TestNoInlineScriptOrThirdPartyAsset: the strict CSP would break an inline
// script, and nothing may come from another origin at run time.
func TestNoInlineScriptOrThirdPartyAsset(t *testing.T) {
	s := newServer(t)
	_, body := get(t, s.URL+"/", nil)
	if strings.Count(body, "<script") != 1 || !strings.Contains(body, `<script type="module" src="/assets/js/app.js"></script>`) {
		t.Errorf("the shell must load exactly one module script and nothing inline:\n%s", body)
	}
	for _, bad := range []string{"http://", "https://", " style=", "onclick=", "onload="} {
		if strings.Contains(body, bad) {
			t.Errorf("the shell contains %q", bad)
		}
	}
}
