package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/python-executor/python-executor/internal/supervisortest"
)

// chromium finds the browser the playground test drives: PYEXEC_CHROMIUM,
// else Debian's chromium on PATH (scripts/setup.sh installs it). Missing, the
// test skips, and fails under CI=true.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PYEXEC_CHROMIUM"); p != "" {
		return p
	}
	p, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is missing; scripts/setup.sh installs Debian's package (or set PYEXEC_CHROMIUM)")
		}
		t.Skip("chromium is missing: NOT RUN; scripts/setup.sh installs it")
	}
	return p
}

// artifactDir is where the test writes its screenshots: $PYEXEC_ARTIFACTS
// when set (CI collects it), else a new directory under the temporary
// directory that is kept, its path logged.
func artifactDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("PYEXEC_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	d, err := os.MkdirTemp("", "pyexec-playground-")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// page drives one browser tab on the playground.
type page struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	problems []string            // uncaught exceptions and console errors
	requests []string            // every URL the page asked for
	headers  []map[string]string // the headers of each POST /execute
}

func (p *page) run(actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, actions...); err != nil {
		p.fatal(err)
	}
}

func (p *page) fatal(err error) {
	p.t.Helper()
	p.mu.Lock()
	problems := append([]string(nil), p.problems...)
	p.mu.Unlock()
	p.t.Fatalf("browser: %v\nthe page's console errors so far: %q", err, problems)
}

// eval evaluates a JavaScript expression in the page (awaiting a promise).
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.fatal(err)
	}
	return v
}

func (p *page) text(sel string) string {
	p.t.Helper()
	return eval[string](p, fmt.Sprintf(`document.querySelector(%q).textContent`, sel))
}

func (p *page) hidden(sel string) bool {
	p.t.Helper()
	return eval[bool](p, fmt.Sprintf(`document.querySelector(%q).hidden`, sel))
}

// waitFor waits until a JavaScript expression is truthy.
func (p *page) waitFor(expr string, timeout time.Duration) {
	p.t.Helper()
	p.run(chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(20*time.Millisecond)))
}

// runAndWait starts an execution with start and waits for the page to show
// its answer; it returns the page's state ("ok" or "error").
func (p *page) runAndWait(start ...chromedp.Action[chromedp.Void]) string {
	p.t.Helper()
	before := eval[int](p, `window.playground.finished()`)
	p.run(start...)
	p.waitFor(fmt.Sprintf(`window.playground.finished() > %d`, before), 90*time.Second)
	return eval[string](p, `document.body.dataset.state`)
}

// press presses and releases one key as a keyboard does: one keyDown (with
// the text the key types, if any) and one keyUp, so a handler that takes
// the keydown (the editor's Enter, Ctrl-Enter) keeps the text from being
// typed as well.
func press(key, code string, vk int64, text string, mods chromedp.Modifier) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for _, typ := range []input.DispatchKeyEventType{input.DispatchKeyEventTypeKeyDown, input.DispatchKeyEventTypeKeyUp} {
			ev := input.DispatchKeyEventParams{Type: typ, Key: key, Code: code, WindowsVirtualKeyCode: vk, Modifiers: int64(mods)}
			if typ == input.DispatchKeyEventTypeKeyDown {
				ev.Text = text
				if text == "" {
					// A key that types nothing, as a keyboard sends it.
					ev.Type = input.DispatchKeyEventTypeRawKeyDown
				}
			}
			if _, err := cdp.Call(ctx, t, input.DispatchKeyEvent, ev); err != nil {
				return err
			}
		}
		return nil
	})
}

var (
	keyEnter     = press("Enter", "Enter", 13, "\r", 0)
	keyEscape    = press("Escape", "Escape", 27, "", 0)
	keyCtrlEnter = press("Enter", "Enter", 13, "", chromedp.ModifierCtrl)
	keyCtrlA     = press("a", "KeyA", 65, "", chromedp.ModifierCtrl)
	keyBackspace = press("Backspace", "Backspace", 8, "", 0)
)

func example(name string) chromedp.Action[chromedp.Void] {
	return chromedp.Click(chromedp.CSS(fmt.Sprintf(`#examples button[data-example=%q]`, name)))
}

var runButton = chromedp.Click(chromedp.CSS(`#run`))

// result is the result pane's formatted JSON.
func (p *page) result() []byte {
	p.t.Helper()
	if p.hidden("#result-box") {
		p.t.Fatalf("no result shown; error %q %q", p.text("#error-type"), p.text("#error-message"))
	}
	return []byte(p.text("#result"))
}

// TestPlayground drives the playground page in a real headless Chromium
// against the real stack: it types a script and runs it with Ctrl-Enter,
// runs the README's examples from their buttons, and asserts on what the
// page shows: output streamed while the script still runs, the result as
// formatted JSON, an image, an error with its type and traceback, an output
// file to download, a limit, the API key header. The page must raise no
// error in the browser (its Content-Security-Policy included) and ask for
// nothing but the gateway. A screenshot is written as an artifact
// (PYEXEC_UPDATE_SCREENSHOT=1 also writes docs/images/playground.png).
func TestPlayground(t *testing.T) {
	chromiumPath := chromium(t)
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		st := supervisortest.StartStack(t, engine)
		base := st.Gateway.URL

		opts := append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(chromiumPath),
			chromedp.WindowSize(1280, 900),
			chromedp.UserDataDir(t.TempDir()),
			// /dev/shm is small in containers.
			chromedp.Flag("disable-dev-shm-usage", true),
		)
		if os.Geteuid() == 0 {
			// Chromium's own sandbox refuses to run as root.
			opts = append(opts, chromedp.NoSandbox)
		}
		actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		defer cancelAlloc()
		bctx, cancelBrowser := chromedp.NewContext(actx)
		defer cancelBrowser()

		p := &page{t: t}
		// The first call starts the browser, on a context without a
		// deadline (a deadline there would stop the browser itself).
		err := chromedp.Listen(bctx, func(ev any) {
			if ev, ok := ev.(*network.EventRequestWillBeSent); ok {
				p.mu.Lock()
				defer p.mu.Unlock()
				p.requests = append(p.requests, ev.Request.URL)
				if ev.Request.Method == "POST" && strings.HasSuffix(ev.Request.URL, "/execute") {
					h := map[string]string{}
					for k, v := range ev.Request.Headers {
						h[strings.ToLower(k)] = fmt.Sprint(v)
					}
					p.headers = append(p.headers, h)
				}
			}
		})
		if err != nil {
			t.Fatalf("start chromium: %v", err)
		}
		// Uncaught exceptions, console errors and the browser's own error
		// entries (a Content-Security-Policy violation is one).
		consoleDone := make(chan struct{})
		cctx, stopConsole := context.WithCancel(bctx)
		go func() {
			defer close(consoleDone)
			for m, err := range chromedp.Console(cctx) {
				if err != nil {
					return
				}
				// The browser logs every 4xx/5xx answer as a failed
				// resource; the subtests assert on those answers
				// themselves (one is a deliberate 400).
				if strings.HasPrefix(m.Text, "Failed to load resource: the server responded with a status of ") {
					continue
				}
				if m.Type == chromedp.ConsoleException || m.Type == "error" {
					p.mu.Lock()
					p.problems = append(p.problems, m.String())
					p.mu.Unlock()
				}
			}
		}()
		defer func() { stopConsole(); <-consoleDone }()
		ctx, cancel := context.WithTimeout(bctx, 8*time.Minute)
		defer cancel()
		p.ctx = ctx

		start := time.Now()
		p.run(chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(`.cm-content`)))
		p.waitFor(`document.getElementById("health").className === "ok"`, 30*time.Second)
		t.Logf("page loaded and healthy in %v: %q", time.Since(start).Round(time.Millisecond), p.text("#health"))

		t.Run("typed_script_ctrl_enter", func(t *testing.T) {
			p.t = t
			// Real key events into the editor: select all, delete, type.
			// The editor indents after ":" and Enter and closes brackets
			// and quotes itself (typing the closer steps over it), so the
			// lines are typed without their indentation; Escape closes
			// an autocompletion popup before each Enter.
			p.run(chromedp.Click(chromedp.CSS(`.cm-content`)), keyCtrlA, keyBackspace)
			for i, line := range []string{`def main():`, `print("typed", 6 * 7)`, `return {"answer": 6 * 7}`} {
				if i > 0 {
					p.run(keyEscape, keyEnter)
				}
				// Each character as a key press into the focused editor.
				p.run(chromedp.KeyEvent(line))
			}
			p.run(keyEscape)
			typed := eval[string](p, `window.playground.script()`)
			want := "def main():\n    print(\"typed\", 6 * 7)\n    return {\"answer\": 6 * 7}"
			if typed != want {
				t.Fatalf("editor holds %q, want %q", typed, want)
			}
			state := p.runAndWait(keyCtrlEnter)
			if state != "ok" || !sameJSON(p.result(), []byte(`{"answer":42}`)) || p.text("#output") != "typed 42\n" {
				t.Fatalf("state %q result %q output %q", state, p.text("#result"), p.text("#output"))
			}
			// Formatted: indented over several lines.
			if r := p.text("#result"); r != "{\n  \"answer\": 42\n}" {
				t.Fatalf("result shown as %q, want indented JSON", r)
			}
			if !strings.HasPrefix(p.text("#stats"), "wall ") {
				t.Fatalf("stats %q", p.text("#stats"))
			}
		})

		t.Run("seed_examples", func(t *testing.T) {
			p.t = t
			for _, ex := range seedExamples {
				if state := p.runAndWait(example(ex.name), runButton); state != "ok" {
					t.Fatalf("%s: state %q: %s %s", ex.name, state, p.text("#error-type"), p.text("#error-message"))
				}
				if got := p.result(); !sameJSON(got, []byte(ex.want)) {
					t.Fatalf("%s: result %s, want %s", ex.name, got, ex.want)
				}
			}
		})

		t.Run("streamed_output", func(t *testing.T) {
			p.t = t
			before := eval[int](p, `window.playground.finished()`)
			p.run(example("stream"), runButton)
			// "step 0" is on the page while the script still runs (it
			// sleeps 1 s per step): the output is streamed, not shown
			// with the answer.
			p.waitFor(`document.getElementById("output").textContent.includes("step 0")`, 30*time.Second)
			state := eval[string](p, `document.body.dataset.state`)
			done := eval[int](p, `window.playground.finished()`)
			if out := p.text("#output"); state != "running" || done != before || strings.Contains(out, "step 2") {
				t.Fatalf("at the first chunk: state %q, answers %d (before %d), output %q; want it still running", state, done, before, out)
			}
			p.waitFor(fmt.Sprintf(`window.playground.finished() > %d`, before), 60*time.Second)
			if out := p.text("#output"); out != "step 0\nstep 1\nstep 2\nalmost done\n" || !sameJSON(p.result(), []byte(`"done"`)) {
				t.Fatalf("output %q result %q", out, p.text("#result"))
			}
			if shown := p.text("#output .stderr"); shown != "almost done\n" {
				t.Fatalf("stderr shown as %q", shown)
			}
		})

		t.Run("error_with_type_and_traceback", func(t *testing.T) {
			p.t = t
			if state := p.runAndWait(example("error"), runButton); state != "error" {
				t.Fatalf("state %q", state)
			}
			typ, msg, tb := p.text("#error-type"), p.text("#error-message"), p.text("#traceback")
			if typ != "exception" || !strings.Contains(msg, "ValueError: 3 is too big") || !strings.Contains(tb, "Traceback") || !strings.Contains(tb, "in check") || p.text("#error-status") != "HTTP 500" {
				t.Fatalf("error shown: type %q status %q message %q traceback %q", typ, p.text("#error-status"), msg, tb)
			}
			if p.hidden("#error-box") || p.hidden("#traceback") || !p.hidden("#result-box") {
				t.Fatal("the error box and traceback must show, the result box not")
			}
			if out := p.text("#output"); out != "checking\n" {
				t.Fatalf("output %q", out)
			}
		})

		t.Run("output_file_download", func(t *testing.T) {
			p.t = t
			if state := p.runAndWait(example("files"), runButton); state != "ok" {
				t.Fatalf("state %q: %s", state, p.text("#error-message"))
			}
			if !sameJSON(p.result(), []byte(`6`)) {
				t.Fatalf("result %q", p.text("#result"))
			}
			// Clicking the link downloads the file's bytes under its name.
			dir := t.TempDir()
			if _, err := chromedp.CallBrowser(p.ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
				Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dir}); err != nil {
				p.fatal(err)
			}
			p.run(chromedp.Click(chromedp.CSS(`#files a[data-name="doubled.csv"]`)))
			var got []byte
			for end := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				b, err := os.ReadFile(filepath.Join(dir, "doubled.csv"))
				if err == nil && len(b) == 6 {
					got = b
					break
				}
				if time.Now().After(end) {
					entries, _ := os.ReadDir(dir)
					t.Fatalf("no doubled.csv downloaded within 20s (%v, %d bytes; directory holds %v)", err, len(b), entries)
				}
			}
			if string(got) != "b\n2\n4\n" {
				t.Fatalf("downloaded %q", got)
			}
		})

		t.Run("limit_and_api_key", func(t *testing.T) {
			p.t = t
			// The hello example clears the args and files the last one set.
			p.run(example("hello"))
			eval[chromedp.Void](p, `window.playground.setScript("import time\ndef main():\n    time.sleep(10)\n")`)
			// The limits are inside a closed <details>.
			eval[chromedp.Void](p, `document.querySelectorAll("details").forEach(d => d.open = true)`)
			// Above the server's maximum: refused before it runs, with an
			// ordinary JSON answer rather than a stream, shown as well.
			eval[chromedp.Void](p, `document.getElementById("limit-timeout").value = "3600"`)
			if state := p.runAndWait(runButton); state != "error" || p.text("#error-type") != "invalid_request" || p.text("#error-status") != "HTTP 400" {
				t.Fatalf("timeout 3600: state %q error %q %q %q, want invalid_request 400", state, p.text("#error-type"), p.text("#error-status"), p.text("#error-message"))
			}
			// args that are not JSON never leave the page.
			eval[chromedp.Void](p, `document.getElementById("args").value = "{nope"`)
			if state := p.runAndWait(runButton); state != "error" || p.text("#error-type") != "invalid_request" || !strings.Contains(p.text("#error-message"), "args is not JSON") {
				t.Fatalf("bad args: state %q error %q %q", state, p.text("#error-type"), p.text("#error-message"))
			}
			eval[chromedp.Void](p, `document.getElementById("args").value = ""; document.getElementById("limit-timeout").value = ""`)
			p.run(chromedp.SendKeys(chromedp.CSS(`#limit-timeout`), "1"),
				chromedp.SendKeys(chromedp.CSS(`#api-key`), "pyexec-test-key"))
			if state := p.runAndWait(runButton); state != "error" || p.text("#error-type") != "timeout" {
				t.Fatalf("state %q error %q %q, want timeout", state, p.text("#error-type"), p.text("#error-message"))
			}
			p.mu.Lock()
			last := p.headers[len(p.headers)-1]
			p.mu.Unlock()
			if last["authorization"] != "Bearer pyexec-test-key" || last["accept"] != "application/x-ndjson" {
				t.Fatalf("POST /execute headers %v", last)
			}
			if stored := eval[string](p, `localStorage.getItem("pyexec.apiKey")`); stored != "pyexec-test-key" {
				t.Fatalf("key stored as %q", stored)
			}
			eval[chromedp.Void](p, `document.getElementById("limit-timeout").value = "";
				document.getElementById("api-key").value = "";
				localStorage.removeItem("pyexec.apiKey");
				document.querySelectorAll("details").forEach(d => d.open = false)`)
		})

		// Last, so that the screenshot shows a plot.
		t.Run("image_inline", func(t *testing.T) {
			p.t = t
			if state := p.runAndWait(example("plot"), runButton); state != "ok" {
				t.Fatalf("state %q: %s", state, p.text("#error-message"))
			}
			if !sameJSON(p.result(), []byte(`{"total_sales":955}`)) {
				t.Fatalf("result %q", p.text("#result"))
			}
			// The browser decoded the PNG: it has matplotlib's default size.
			p.waitFor(`(() => { const i = document.querySelector("#images img"); return i && i.complete && i.naturalWidth > 0; })()`, 10*time.Second)
			if size := eval[[]int](p, `(() => { const i = document.querySelector("#images img"); return [i.naturalWidth, i.naturalHeight]; })()`); len(size) != 2 || size[0] != 640 || size[1] != 480 {
				t.Fatalf("image shown at natural size %v, want 640x480", size)
			}
			p.run(chromedp.ScrollIntoView(chromedp.CSS(`header`)))
			shot, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
			if err != nil {
				p.fatal(err)
			}
			if _, err := png.Decode(bytes.NewReader(shot)); err != nil {
				t.Fatalf("screenshot is not a PNG: %v", err)
			}
			path := filepath.Join(artifactDir(t), "playground-"+engine+".png")
			if err := os.WriteFile(path, shot, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("screenshot: %s", path)
			if os.Getenv("PYEXEC_UPDATE_SCREENSHOT") == "1" {
				readme := filepath.Join(supervisortest.RepoRoot(t), "docs", "images", "playground.png")
				if err := os.WriteFile(readme, shot, 0o644); err != nil {
					t.Fatal(err)
				}
				t.Logf("README screenshot updated: %s", readme)
			}
		})

		p.t = t
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, pr := range p.problems {
			t.Errorf("the page raised in the browser: %s", pr)
		}
		// Works offline: nothing but the gateway (and the page's own
		// data: and blob: URLs) was asked for.
		for _, u := range p.requests {
			if !strings.HasPrefix(u, base+"/") && !strings.HasPrefix(u, "data:") && !strings.HasPrefix(u, "blob:") {
				t.Errorf("the page asked for %s, outside the gateway", u)
			}
		}
		if len(p.headers) < 9 {
			t.Errorf("only %d executions seen going out, want at least 9", len(p.headers))
		}
	})
}

// TestPlaygroundOff: with -playground=false the gateway serves no page; /
// is 404 like any unknown path, and the API works.
func TestPlaygroundOff(t *testing.T) {
	supervisortest.RequireRoot(t)
	s := supervisortest.Start(t, supervisortest.Options{GatewayUser: supervisortest.GatewayUser})
	g := supervisortest.StartGateway(t, s, "-playground=false")
	resp, err := httpClient.Get(g.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Error struct{ Type string } `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != 404 || body.Error.Type != "not_found" {
		t.Fatalf("GET / = %d %+v, want 404 not_found", resp.StatusCode, body)
	}
	execute(t, g.URL, "def main(): return 1", nil).wantOK(t)
}
