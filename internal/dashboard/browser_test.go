package dashboard_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-project/kanade/internal/agent"
	"github.com/kanade-project/kanade/internal/release"
	"github.com/kanade-project/kanade/internal/server"
	"github.com/kanade-project/kanade/internal/serverconfig"
)

// chromiumPath is Debian's chromium, which .ci/run installs.
const chromiumPath = "/usr/bin/chromium"

// notFoundPath is a page the application does not have.
const notFoundPath = "/no/such/page"

// fleet is a real kanade server (embedded broker, SQLite, HTTP with auth
// on) with real agents connected to it.
type fleet struct {
	t     *testing.T
	url   string // the HTTP base URL
	token string // the static admin token
	js    jetstream.JetStream
}

// startFleet starts `kanade server` in-process on random ports with a
// static API token, then one real agent per id, and returns once every
// agent is online in the API.
func startFleet(t *testing.T, agents ...string) *fleet {
	t.Helper()
	dir := t.TempDir()
	token := "dashboard-test-token-0123456789"
	tokenFile := filepath.Join(dir, "api.token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := serverconfig.Default()
	cfg.Auth.TokenFile = tokenFile
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan [2]string, 1)
	done := make(chan error, 1)
	discard := slog.New(slog.DiscardHandler)
	go func() {
		done <- server.Run(ctx, server.Options{Config: cfg, DataDir: filepath.Join(dir, "server"), NATSListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0",
			Logger: discard, Ready: func(n, h string) { ready <- [2]string{n, h} }})
	}()
	var natsURL string
	f := &fleet{t: t, token: token}
	select {
	case u := <-ready:
		natsURL, f.url = u[0], u[1]
	case err := <-done:
		cancel()
		t.Fatalf("server did not start: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("server not ready after 60 s")
	}
	// Cleanups run last-in first-out: agents stop before the server.
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if f.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}

	// Agents collect inventory at once rather than within 10 minutes.
	f.api("PUT", "/api/config/scopes/global", map[string]any{"values": map[string]any{"inventory_jitter": "0s"}, "revision": 0}, nil)
	for _, id := range agents {
		a, err := agent.New(agent.Config{ID: id, NATSURLs: []string{natsURL}, DataDir: t.TempDir(), Version: "1.0.0", HeartbeatInterval: time.Second, Logger: discard})
		if err != nil {
			t.Fatal(err)
		}
		actx, stop := context.WithCancel(context.Background())
		adone := make(chan error, 1)
		go func() { adone <- a.Run(actx) }()
		t.Cleanup(func() {
			stop()
			if err := <-adone; err != nil && err != context.Canceled {
				t.Errorf("agent %s: %v", id, err)
			}
		})
	}
	f.poll("every agent online", 30*time.Second, func() bool {
		var out struct{ Total int }
		f.api("GET", "/api/agents?online=true", nil, &out)
		return out.Total == len(agents)
	})
	return f
}

// api calls the HTTP API with the static token; any status >= 400 fails
// the test.
func (f *fleet) api(method, path string, body, out any) {
	f.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			f.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, f.url+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+f.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 {
		f.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			f.t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

// poll waits for cond with a deadline (no sleeping as synchronisation:
// the condition is checked until it holds).
func (f *fleet) poll(what string, within time.Duration, cond func() bool) {
	f.t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			f.t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		<-tick.C
	}
}

// browser is one headless Chromium tab, and what its pages reported that
// a test must not ignore: uncaught exceptions, console errors, CSP
// violations, failed loads of the dashboard's own files.
type browser struct {
	ctx      context.Context
	mu       sync.Mutex
	problems []string
}

// newBrowser starts Debian's chromium headless with the flags of the
// issue and a fresh profile. Without chromium it skips, unless
// KANADE_REQUIRE_BROWSER is set (CI), where it fails.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("KANADE_REQUIRE_BROWSER") != "" {
			t.Fatalf("KANADE_REQUIRE_BROWSER is set but %s is missing (apt-get install chromium): %v", chromiumPath, err)
		}
		t.Skipf("browser tests need %s (apt-get install chromium); skipped", chromiumPath)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &browser{ctx: ctx}
	err := chromedp.Listen(ctx, func(ev any) {
		var p string
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			p = fmt.Sprintf("uncaught exception: %s %s:%d", d.Text, d.URL, d.LineNumber)
			if d.Exception != nil {
				p += " " + d.Exception.Description
			}
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				p = "console.error: " + strings.Join(args, " ")
			}
		case *cdplog.EventEntryAdded:
			e := ev.Entry
			// The API answers 401, 404 and the like on purpose (not
			// logged in yet, an ad-hoc run has no wave plan), and an
			// unknown page is a 404 on purpose; those are the page's
			// business. Anything else is not.
			expected := e.Source == cdplog.EntrySourceNetwork && (strings.Contains(e.URL, "/api/") || strings.HasSuffix(e.URL, notFoundPath))
			if e.Level == cdplog.EntryLevelError && !expected {
				p = fmt.Sprintf("%s: %s %s", e.Source, e.Text, e.URL)
			}
		}
		if p != "" {
			b.mu.Lock()
			b.problems = append(b.problems, p)
			b.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatalf("starting %s: %v", chromiumPath, err)
	}
	return b
}

// check fails the test for what the pages reported so far.
func (b *browser) check(t *testing.T) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		t.Errorf("browser: %s", p)
	}
	b.problems = nil
}

// do runs actions with a deadline.
func (b *browser) do(t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		// Leave what the page showed for whoever reads the failure.
		dctx, dcancel := context.WithTimeout(b.ctx, 10*time.Second)
		defer dcancel()
		loc, _ := chromedp.Run(dctx, chromedp.Location())
		text, _ := chromedp.Run(dctx, chromedp.Evaluate[string](`document.body.innerText`))
		if png, err := chromedp.Run(dctx, chromedp.FullScreenshot(100)); err == nil {
			_ = os.WriteFile(filepath.Join(artifactsDir(t), "failure.png"), png, 0o644)
		}
		t.Fatalf("%s (at %s): %v\npage text:\n%s", what, loc, err, text)
	}
}

// eval evaluates a JavaScript expression.
func eval[T any](t *testing.T, b *browser, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// waitJS polls a JavaScript condition in the page until it is true.
func waitJS(expr string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond))(ctx, tg)
		return chromedp.Void{}, err
	}
}

// pageReady waits until the page's render finished.
func pageReady() chromedp.Action[chromedp.Void] {
	return waitJS(`document.querySelector('main[data-ready="1"]') !== null`)
}

// rowState is the state badge of a PC's row in the live results table.
func rowState(pc string) string {
	return fmt.Sprintf(`(document.querySelector('#live-results tr[data-pc=%q] .badge') || {}).textContent`, pc)
}

type viewport struct {
	name          string
	width, height int64
	mobile        bool
}

func (b *browser) setViewport(t *testing.T, v viewport) {
	t.Helper()
	var opts []chromedp.EmulateViewportOption
	if v.mobile {
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch)
	}
	b.do(t, "viewport "+v.name, chromedp.EmulateViewport(v.width, v.height, opts...))
}

func (b *browser) colorScheme(t *testing.T, scheme string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}}); err != nil {
		t.Fatal(err)
	}
}

// artifactsDir is where screenshots go: $KANADE_ARTIFACTS, or
// artifacts/screenshots at the repository root (ignored by git).
func artifactsDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("KANADE_ARTIFACTS"); d != "" {
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "artifacts", "screenshots")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// shoot saves a full-page screenshot and, on a phone, checks that the
// page does not scroll sideways.
func (b *browser) shoot(t *testing.T, dir string, v viewport, name string) {
	t.Helper()
	if v.mobile {
		overflow := eval[string](t, b, `(() => {
			const w = window.innerWidth;
			if (document.documentElement.scrollWidth <= w && w === 390) return '';
			const wide = [...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > w + 0.5)
				.slice(0, 5).map((e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + '.' + [...e.classList].join('.') + ' right=' + Math.round(e.getBoundingClientRect().right));
			return 'scrollWidth ' + document.documentElement.scrollWidth + ' > innerWidth ' + w + ': ' + wide.join(', ');
		})()`)
		if overflow != "" {
			t.Errorf("%s at %dpx scrolls sideways: %s", name, v.width, overflow)
		}
	}
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	// From the top, so that the sticky bar is where a reader sees it.
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`)); err != nil {
		t.Fatal(err)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%dx%d.png", name, v.width, v.height)), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// seed gives the secondary pages something to show: a job, a schedule,
// signed and unsigned releases, a rollout at a group, a group member.
func seed(t *testing.T, f *fleet) {
	t.Helper()
	f.api("POST", "/api/jobs", "id: hello\nversion: \"1\"\ndescription: says hello\nexecute:\n  shell: sh\n  script: echo hello\n  timeout: 1m\n", nil)
	f.api("POST", "/api/schedules", "id: nightly-hello\njob: hello\ndescription: every night\nenabled: true\ncron: \"0 2 * * *\"\ntimezone: UTC\ntarget: {all: true}\n", nil)
	bin := filepath.Join(t.TempDir(), "kanade-agent")
	if err := os.WriteFile(bin, []byte("not really an agent"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, o := range []release.PublishOptions{{Path: bin, Version: "1.1.0", OS: "linux", Arch: "amd64", Key: key}, {Path: bin, Version: "1.1.0", OS: "windows", Arch: "amd64"}} {
		if _, err := release.Publish(ctx, f.js, o); err != nil {
			t.Fatal(err)
		}
	}
	f.api("PUT", "/api/agents/web-a/groups", map[string]any{"groups": []string{"canary"}, "revision": 0}, nil)
	f.api("PUT", "/api/rollout/groups.canary", map[string]any{"version": "1.1.0", "jitter": "1h"}, nil)
}

// TestDashboardInBrowser drives the dashboard in headless Chromium against
// a real server with two real agents: log in, see both agents online, run
// echo on one and see its output, open the execution, kill a long script
// and see it end as killed, open an agent's inventory; then screenshot
// every page at 1366×768 and 390×844.
func TestDashboardInBrowser(t *testing.T) {
	b := newBrowser(t)
	f := startFleet(t, "web-a", "web-b")
	dir := artifactsDir(t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	desktop, phone := viewport{"desktop", 1366, 768, false}, viewport{"phone", 390, 844, true}
	viewports := []viewport{desktop, phone}

	// The login page, before logging in, at both sizes.
	for _, v := range viewports {
		b.setViewport(t, v)
		b.do(t, "open the login page", chromedp.Navigate(f.url+"/agents"), chromedp.WaitVisible(chromedp.CSS("#token")), pageReady())
		if loc := eval[string](t, b, `location.pathname + location.search`); loc != "/login?next=%2Fagents" {
			t.Errorf("an anonymous visit to /agents went to %s, want /login?next=%%2Fagents", loc)
		}
		b.shoot(t, dir, v, "login")
	}

	// Log in with the static token through the form.
	b.setViewport(t, desktop)
	b.do(t, "log in",
		chromedp.SendKeys(chromedp.CSS("#token"), f.token),
		chromedp.Click(chromedp.CSS("#login-form button[type=submit]")),
		waitJS(`location.pathname === '/agents'`), pageReady())
	if got := eval[bool](t, b, `document.cookie.includes('kanade_session')`); got {
		t.Error("the session cookie is readable from script; it must be HttpOnly")
	}
	if stored := eval[int](t, b, `localStorage.length + sessionStorage.length`); stored != 0 {
		t.Errorf("the dashboard stored %d items in web storage; the token must not be kept there", stored)
	}

	// Agents: both online.
	b.do(t, "see both agents online", waitJS(`['web-a', 'web-b'].every((pc) => [...document.querySelectorAll('#agents tbody tr')]
		.some((tr) => tr.textContent.includes(pc) && tr.querySelector('.badge.ok') && tr.querySelector('.badge.ok').textContent === 'online'))`))

	// Signed commands: the agents enforce nothing (no key ring configured)
	// and report "off", in the list's column, through its filter and on
	// an agent's page.
	signingCells := `[...document.querySelectorAll('#agents td[data-label="Signing"]')].map((td) => td.textContent).join()`
	setSigning := func(v string) chromedp.Action[chromedp.Void] {
		return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => { const s = document.querySelector('#agents-signing'); s.value = %q; s.dispatchEvent(new Event('change')); })()`, v))
	}
	b.do(t, "see the agents' signing state",
		waitJS(signingCells+` === 'off,off'`),
		setSigning("enforced"),
		waitJS(`location.search === '?command_signing=enforced' && document.querySelector('#agents tr.empty-row') !== null`),
		setSigning("off"),
		waitJS(`location.search === '?command_signing=off' && `+signingCells+` === 'off,off'`))
	b.do(t, "see web-a's signing state",
		chromedp.Navigate(f.url+"/agents/web-a"), pageReady(),
		waitJS(`(document.querySelector('#command-signing[data-state="off"]') || {}).textContent === 'off — not required'`),
		waitJS(`[...document.querySelectorAll('dl.kv dt')].some((dt) => dt.textContent === 'Signed commands' && dt.nextElementSibling.querySelector('#command-signing'))`))

	// Run echo on web-a from the Run page and see its output.
	b.do(t, "run echo",
		chromedp.Click(chromedp.CSS(`#nav a[href="/run"]`)), pageReady(),
		chromedp.SendKeys(chromedp.CSS("#run-pcs"), "web-a"),
		chromedp.SetValue(chromedp.CSS("#run-shell"), "sh"),
		chromedp.SendKeys(chromedp.CSS("#run-script"), "echo hello-from-the-dashboard"),
		chromedp.Click(chromedp.CSS("#run-submit")),
		chromedp.WaitVisible(chromedp.CSS("#confirm-ok")),
		chromedp.Click(chromedp.CSS("#confirm-ok")),
		waitJS(rowState("web-a")+` === 'succeeded'`),
		chromedp.WaitVisible(chromedp.CSS(`#live-results tr[data-pc="web-a"] details[open] pre`)),
		waitJS(`document.querySelector('.audit-toast[data-action="run"]') !== null`))
	out := eval[string](t, b, `document.querySelector('#live-results tr[data-pc="web-a"] details pre').textContent`)
	if strings.TrimSpace(out) != "hello-from-the-dashboard" {
		t.Errorf("stdout shown: %q", out)
	}
	echoExec := eval[string](t, b, `document.querySelector('#run-results .live').dataset.exec`)
	b.shoot(t, dir, desktop, "run-result")

	// Open the execution.
	b.do(t, "open the execution",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#run-results a[href="/executions/%s"]`, echoExec))),
		waitJS(fmt.Sprintf(`location.pathname === '/executions/%s'`, echoExec)), pageReady(),
		waitJS(rowState("web-a")+` === 'succeeded'`))

	// Run a long script on web-b, open its execution, kill it there.
	b.do(t, "start a long script",
		chromedp.Navigate(f.url+"/run?pc=web-b"), pageReady(),
		chromedp.SetValue(chromedp.CSS("#run-shell"), "sh"),
		chromedp.SendKeys(chromedp.CSS("#run-script"), "echo started; sleep 120"),
		chromedp.Click(chromedp.CSS("#run-submit")),
		chromedp.WaitVisible(chromedp.CSS("#confirm-ok")),
		chromedp.Click(chromedp.CSS("#confirm-ok")),
		waitJS(rowState("web-b")+` === 'running'`))
	sleepExec := eval[string](t, b, `document.querySelector('#run-results .live').dataset.exec`)
	b.do(t, "kill it from its execution page",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#run-results a[href="/executions/%s"]`, sleepExec))), pageReady(),
		waitJS(rowState("web-b")+` === 'running'`),
		chromedp.WaitVisible(chromedp.CSS("#kill")),
		chromedp.Click(chromedp.CSS("#kill")),
		chromedp.WaitVisible(chromedp.CSS("#confirm-ok")),
		chromedp.Click(chromedp.CSS("#confirm-ok")),
		waitJS(rowState("web-b")+` === 'killed'`),
		waitJS(`document.querySelector('.audit-toast[data-action="kill"]') !== null`))

	// A script past its timeout ends as "timed out", from the result's
	// timed_out (the agent's own report), not killed.
	b.do(t, "run past a timeout",
		chromedp.Navigate(f.url+"/run?pc=web-a"), pageReady(),
		chromedp.SetValue(chromedp.CSS("#run-shell"), "sh"),
		chromedp.SendKeys(chromedp.CSS("#run-script"), "sleep 60"),
		chromedp.SendKeys(chromedp.CSS("#run-timeout"), "1s"),
		chromedp.Click(chromedp.CSS("#run-submit")),
		chromedp.WaitVisible(chromedp.CSS("#confirm-ok")),
		chromedp.Click(chromedp.CSS("#confirm-ok")),
		waitJS(rowState("web-a")+` === 'timed out'`))

	// The overview's agent figures, from GET /api/health/fleet alone.
	b.do(t, "see the overview's figures",
		chromedp.Navigate(f.url+"/"), pageReady(),
		waitJS(`(document.querySelector('.stat[data-stat="online"] .stat-value') || {}).textContent === '2'`),
		waitJS(`document.querySelector('.stat[data-stat="stale"] .stat-value').textContent === '0'`),
		waitJS(`[...document.querySelectorAll('.bar-label')].some((e) => e.textContent === '`+goruntime.GOOS+`')`),
		waitJS(`[...document.querySelectorAll('.bar-label')].some((e) => e.textContent === '1.0.0')`))

	// An agent's inventory.
	f.poll("web-a's inventory", 30*time.Second, func() bool {
		var inv struct{ Sections []json.RawMessage }
		f.api("GET", "/api/inventory/web-a", nil, &inv)
		return len(inv.Sections) == 4
	})
	b.do(t, "open web-a's inventory",
		chromedp.Navigate(f.url+"/agents/web-a"), pageReady(),
		chromedp.Click(chromedp.CSS(`.tabs a[data-tab="inventory"]`)), pageReady(),
		chromedp.WaitVisible(chromedp.CSS(`section[data-section="hw"]`)),
		chromedp.WaitVisible(chromedp.CSS(`section[data-section="os"]`)),
		chromedp.WaitVisible(chromedp.CSS(`section[data-section="net"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#software`)))
	b.check(t)

	// Every page at both sizes (and the overview in both themes).
	seed(t, f)
	type page struct{ name, path, wait string }
	pages := []page{
		{"overview", "/", `.stat`},
		{"agents", "/agents", `#agents tbody tr`},
		{"agent", "/agents/web-a", `dl.kv`},
		{"agent-inventory", "/agents/web-a?tab=inventory", `#software`},
		{"agent-config", "/agents/web-a?tab=config", `#config`},
		{"agent-groups", "/agents/web-a?tab=groups", `#group-name`},
		{"agent-results", "/agents/web-b?tab=results", `table.data`},
		{"agent-timeline", "/agents/web-a?tab=timeline", `table.data`},
		{"run", "/run?exec=" + echoExec, `#live-results tbody tr`},
		{"executions", "/executions", `#executions`},
		{"execution", "/executions/" + echoExec, `#live-results tbody tr`},
		{"execution-killed", "/executions/" + sleepExec, `#live-results tbody tr`},
		{"jobs", "/jobs", `#jobs tbody tr`},
		{"job", "/jobs/hello", `#job-yaml`},
		{"schedules", "/schedules", `#schedules tbody tr`},
		{"rollout", "/rollout", `#targets tbody tr`},
		{"events", "/events", `#events table`},
		{"audit", "/audit", `#audit-table tbody tr`},
		{"not-found", notFoundPath, `main[data-page="notfound"]`},
	}
	// A job's YAML with a mistake: the server's problems are shown next
	// to the editor, and nothing is saved.
	b.setViewport(t, desktop)
	b.do(t, "save a bad manifest",
		chromedp.Navigate(f.url+"/jobs/hello"), pageReady(),
		chromedp.SetValue(chromedp.CSS("#job-yaml"), "id: hello\nversion: \"2\"\nexecute:\n  shel: sh\n  script: echo hi\n"),
		chromedp.Click(chromedp.CSS(".yaml-form button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#confirm-ok")),
		chromedp.Click(chromedp.CSS("#confirm-ok")),
		waitJS(`(document.querySelector('#job-yaml-problems') || {}).textContent.includes('execute.shel: unknown key')`))
	b.shoot(t, dir, desktop, "job-invalid")

	// Run the catalog job now on web-a: its execution page shows the plan,
	// the wave and web-a's result.
	b.do(t, "run a job now",
		chromedp.Navigate(f.url+"/jobs/hello"), pageReady(),
		// As a user's choice does, fire "change" (SetValue does not).
		chromedp.Evaluate[chromedp.Void](`(() => { const k = document.querySelector('#exec-kind'); k.value = 'pcs'; k.dispatchEvent(new Event('change')); })()`),
		chromedp.SendKeys(chromedp.CSS("#exec-names"), "web-a"),
		chromedp.Click(chromedp.CSS("#run-now button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#confirm-ok")),
		chromedp.Click(chromedp.CSS("#confirm-ok")),
		waitJS(`location.pathname.startsWith('/executions/')`), pageReady(),
		chromedp.WaitVisible(chromedp.CSS("#waves")),
		waitJS(rowState("web-a")+` === 'succeeded'`))
	jobExec := eval[string](t, b, `location.pathname.split('/')[2]`)
	pages = append(pages, page{"execution-job", "/executions/" + jobExec, `#waves`})

	// The job page shows whether the job is revoked and offers the one
	// action that changes it; each change shows its audit entry.
	for _, step := range []struct{ button, status, next string }{
		{"#revoke", "revoked", "#unrevoke"},
		{"#unrevoke", "active", "#revoke"},
	} {
		b.do(t, "click "+step.button,
			chromedp.Navigate(f.url+"/jobs/hello"), pageReady(),
			chromedp.Click(chromedp.CSS(step.button)),
			chromedp.WaitVisible(chromedp.CSS("#confirm-ok")),
			chromedp.Click(chromedp.CSS("#confirm-ok")),
			waitJS(fmt.Sprintf(`(document.querySelector('#script-status') || {}).textContent === %q`, step.status)),
			chromedp.WaitVisible(chromedp.CSS(step.next)),
			waitJS(fmt.Sprintf(`document.querySelector('.audit-toast[data-action=%q]') !== null`, step.button[1:])))
		if n := eval[int](t, b, `document.querySelectorAll('#revoke, #unrevoke').length`); n != 1 {
			t.Errorf("after %s the job page offers %d revoke/unrevoke buttons, want 1", step.button, n)
		}
	}

	// Audit, filtered by the server, and an older page of it.
	b.do(t, "filter the audit by action",
		chromedp.Navigate(f.url+"/audit?action=kill"), pageReady(),
		waitJS(`[...document.querySelectorAll('#audit-table tbody tr')].length > 0 &&
			[...document.querySelectorAll('#audit-table tbody td[data-label="Action"]')].every((td) => td.textContent === 'kill')`))
	b.do(t, "an older page of the audit",
		chromedp.Navigate(f.url+"/audit?before=3"), pageReady(),
		waitJS(`[...document.querySelectorAll('#audit-table tbody td[data-label="#"]')].map((td) => td.textContent).join() === '2,1'`),
		waitJS(`[...document.querySelectorAll('#older-pager a')].some((a) => a.textContent === '« Newest')`))

	for _, v := range viewports {
		b.setViewport(t, v)
		for _, p := range pages {
			b.do(t, "open "+p.path, chromedp.Navigate(f.url+p.path), pageReady(), chromedp.WaitVisible(chromedp.CSS(p.wait)))
			b.shoot(t, dir, v, p.name)
		}
	}
	b.colorScheme(t, "dark")
	for _, v := range []viewport{desktop, phone} {
		b.setViewport(t, v)
		for _, p := range pages[:2] {
			b.do(t, "open "+p.path, chromedp.Navigate(f.url+p.path), pageReady(), chromedp.WaitVisible(chromedp.CSS(p.wait)))
			b.shoot(t, dir, v, p.name+"-dark")
		}
	}
	// Log out (from the phone's menu): the next page asks for the token
	// again.
	b.setViewport(t, phone)
	b.do(t, "log out",
		chromedp.Navigate(f.url+"/audit"), pageReady(),
		chromedp.Click(chromedp.CSS("#menu-toggle")),
		chromedp.WaitVisible(chromedp.CSS("#logout")))
	b.shoot(t, dir, phone, "menu")
	b.do(t, "log out",
		chromedp.Click(chromedp.CSS("#logout")),
		waitJS(`location.pathname === '/login'`),
		chromedp.Navigate(f.url+"/agents"), chromedp.WaitVisible(chromedp.CSS("#token")))
	b.check(t)
	t.Logf("screenshots in %s", dir)
}
