// Package dashboard serves kanade's web dashboard: a single-page
// application of hand-written ES modules, one stylesheet and one HTML
// shell, all embedded in the binary, that talks to the JSON API under
// /api/ like any other client.
//
// Guarantees:
//   - nothing is fetched from anywhere but this server: the files are
//     embedded and the Content-Security-Policy allows only 'self' (no
//     inline script, no eval, no framing);
//   - every page path of the application (/, /agents, /agents/{pc}, ...)
//     answers the HTML shell so that any URL can be bookmarked and
//     reloaded; other paths answer the same shell with status 404, and the
//     application shows its "not found" view;
//   - /assets/ serves only the embedded files (404 for anything else),
//     each with a strong ETag so a browser revalidates with one cheap 304;
//   - only GET and HEAD are accepted: the dashboard itself holds no state,
//     every change goes through the API with its roles and audit trail.
package dashboard

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// contentSecurityPolicy is sent with every response. Scripts, styles,
// images and API calls come from this origin only; inline script and eval
// are refused, so even a rendering bug that let attacker-controlled text
// (a hostname, a script's output) into the DOM as markup could not run.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// asset is one embedded file, ready to serve.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

// Handler serves the dashboard. It is safe for concurrent use and holds
// no mutable state.
type Handler struct {
	assets map[string]asset // by path under /assets/
	index  asset
	// modTime is when the handler was built; http.ServeContent needs one
	// for Last-Modified, and embedded files carry none.
	modTime time.Time
}

// New reads the embedded files once.
func New() (*Handler, error) {
	h := &Handler{assets: map[string]asset{}, modTime: time.Now()}
	root, err := fs.Sub(static, "static")
	if err != nil {
		return nil, err
	}
	err = fs.WalkDir(root, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(root, p)
		if err != nil {
			return err
		}
		a := newAsset(p, b)
		if p == "index.html" {
			h.index = a
			return nil
		}
		h.assets[p] = a
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dashboard: reading embedded files: %w", err)
	}
	if h.index.body == nil {
		return nil, fmt.Errorf("dashboard: index.html is not embedded")
	}
	return h, nil
}

func newAsset(name string, b []byte) asset {
	sum := sha256.Sum256(b)
	ct := mime.TypeByExtension(path.Ext(name))
	switch path.Ext(name) {
	case ".js":
		// Module scripts need a JavaScript type; the platform's MIME
		// table may lack it (Windows reads the registry).
		ct = "text/javascript; charset=utf-8"
	case ".css":
		ct = "text/css; charset=utf-8"
	case ".svg":
		ct = "image/svg+xml"
	case ".html":
		ct = "text/html; charset=utf-8"
	}
	if ct == "" {
		ct = "application/octet-stream"
	}
	return asset{body: b, contentType: ct, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
}

// securityHeaders are set on every answer, errors included.
func securityHeaders(w http.ResponseWriter) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", contentSecurityPolicy)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
}

// isPage reports whether p is one of the application's page paths; the
// router in static/js/app.js has the same table.
func isPage(p string) bool {
	if p == "/" {
		return true
	}
	first, rest, hasRest := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	switch first {
	case "login", "run", "schedules", "rollout", "events", "audit":
		return !hasRest
	case "agents", "executions", "jobs":
		// The list, and one item by id: /agents/{pc}.
		return !hasRest || (rest != "" && !strings.Contains(rest, "/"))
	}
	return false
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if name, ok := strings.CutPrefix(r.URL.Path, "/assets/"); ok {
		a, found := h.assets[name]
		if !found {
			http.NotFound(w, r)
			return
		}
		// Module files are not fingerprinted (their relative imports
		// would need rewriting), so every load revalidates; the ETag
		// turns that into an empty 304.
		h.serve(w, r, a, "no-cache")
		return
	}
	// The escaped path, like the browser's location.pathname: a pc_id
	// may contain '/' (sent as %2F) and is still one segment.
	if !isPage(r.URL.EscapedPath()) {
		// The shell still renders the application's own "not found"
		// view, with the navigation; the status tells crawlers and
		// scripts the truth.
		w.Header().Set("Content-Type", h.index.contentType)
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNotFound)
		if r.Method == http.MethodGet {
			_, _ = w.Write(h.index.body)
		}
		return
	}
	h.serve(w, r, h.index, "no-cache")
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, a asset, cache string) {
	w.Header().Set("Content-Type", a.contentType)
	w.Header().Set("Cache-Control", cache)
	w.Header().Set("ETag", a.etag)
	http.ServeContent(w, r, "", h.modTime, bytes.NewReader(a.body))
}
