package gateway

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/python-executor/python-executor/client"
	"github.com/python-executor/python-executor/wire"
)

// digestOf is the keys file's form of key.
func digestOf(key string) string {
	d := sha256.Sum256([]byte(key))
	return hex.EncodeToString(d[:])
}

// keysFile writes lines to a new keys file and returns its path.
func keysFile(t *testing.T, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keys")
	writeKeys(t, p, lines...)
	return p
}

// writeKeys replaces the file at p the way an operator's tooling should:
// a new file renamed over the old, so the gateway never reads half of it.
func writeKeys(t *testing.T, p string, lines ...string) {
	t.Helper()
	tmp := p + ".new"
	if err := os.WriteFile(tmp, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}

func bearer(key string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + key}
}

func postKey(t *testing.T, ts *testServer, key string) reply {
	t.Helper()
	var h map[string]string
	if key != "" {
		h = bearer(key)
	}
	return do(t, "POST", ts.url+"/execute", "application/json", `{"script":"x"}`, h)
}

// With keys off (the default) nothing asks for one, an Authorization header
// is ignored, and no RateLimit header is sent.
func TestKeysOffByDefault(t *testing.T) {
	ts := start(t, &fakeExec{})
	for _, key := range []string{"", "whatever"} {
		r := postKey(t, ts, key)
		if r.status != 200 || r.header.Get("RateLimit-Policy") != "" || r.header.Get("RateLimit") != "" {
			t.Fatalf("key %q: %d %v %s", key, r.status, r.header, r.body)
		}
	}
}

// With keys on, /execute and /mcp need a known key; /health, /openapi.json,
// / and CORS preflights do not. The log names the key, never the secret.
func TestKeysRequired(t *testing.T) {
	f := &fakeExec{}
	file := keysFile(t, "# clients", "", "alice:"+digestOf("alice-secret")+" rate=off concurrency=0", "bob:"+digestOf("bob-secret"))
	ts := start(t, f, func(c *Config) { c.KeysFile = file })

	r := postKey(t, ts, "")
	checkError(t, r, 401, "unauthorized")
	if got := r.header.Get("WWW-Authenticate"); got != `Bearer realm="python-executor"` {
		t.Fatalf("WWW-Authenticate %q", got)
	}
	for _, h := range []map[string]string{
		bearer("mallory"),
		{"Authorization": "Basic " + "alice-secret"},
		{"Authorization": "Bearer"},
		{"Authorization": "alice-secret"},
		{"X-Api-Key": "alice-secret"},
		// The digest is not the key.
		bearer(digestOf("alice-secret")),
	} {
		r := do(t, "POST", ts.url+"/execute", "application/json", `{"script":"x"}`, h)
		checkError(t, r, 401, "unauthorized")
	}
	if r := do(t, "POST", ts.url+"/execute", "application/json", `{"script":"x"}`, bearer("mallory")); !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("a wrong key's WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
	}
	// The unauthorised never reached the executor, nor does a 405 or a
	// 404 under /mcp reveal anything before the key is checked.
	if n := f.calls(); n != 0 {
		t.Fatalf("executor called %d times without a key", n)
	}
	checkError(t, do(t, "GET", ts.url+"/execute", "", "", nil), 401, "unauthorized")
	checkError(t, do(t, "POST", ts.url+"/mcp", "application/json", `{}`, nil), 401, "unauthorized")

	// The scheme is case-insensitive; space around the key is not part of it.
	for _, h := range []map[string]string{bearer("alice-secret"), {"Authorization": "bearer   alice-secret "}, bearer("bob-secret")} {
		if r := do(t, "POST", ts.url+"/execute", "application/json", `{"script":"x"}`, h); r.status != 200 {
			t.Fatalf("%v: %d %s", h, r.status, r.body)
		}
	}
	for _, path := range []string{"/health", "/openapi.json"} {
		if r := do(t, "GET", ts.url+path, "", "", nil); r.status != 200 {
			t.Fatalf("GET %s without a key: %d %s", path, r.status, r.body)
		}
	}
	if r := do(t, "OPTIONS", ts.url+"/execute", "", "", nil); r.status != 204 {
		t.Fatalf("OPTIONS /execute without a key: %d %s", r.status, r.body)
	}
	// Not keyed paths: 404 as ever (/ is the playground's, where it is on).
	checkError(t, do(t, "GET", ts.url+"/nope", "", "", nil), 404, "not_found")
	// The playground stays open: the page itself needs no key.
	if r := do(t, "GET", ts.url+"/", "", "", nil); r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / without a key: %d %q", r.status, r.header.Get("Content-Type"))
	}
	checkError(t, do(t, "GET", ts.url+"/mcpx", "", "", nil), 404, "not_found")

	logs := ts.logs.String()
	if !strings.Contains(logs, `"key":"alice"`) || !strings.Contains(logs, `"key":"bob"`) {
		t.Fatalf("the access log does not name the keys:\n%s", logs)
	}
	if strings.Contains(logs, "alice-secret") || strings.Contains(logs, "bob-secret") {
		t.Fatalf("a key's secret is in the log:\n%s", logs)
	}
}

var rateStateRE = regexp.MustCompile(`^"rate";r=(\d+)(?:;t=(\d+))?$`)

// A key's rate limit: the first quota's requests pass, the next is 429
// rate_limited with Retry-After, and the RateLimit headers count down.
func TestKeyRateLimit(t *testing.T) {
	file := keysFile(t, "alice:"+digestOf("a")+" rate=3/m concurrency=0", "bob:"+digestOf("b"))
	ts := start(t, &fakeExec{}, func(c *Config) { c.KeysFile = file; c.KeyRate = "100/s"; c.KeyConcurrency = 0 })
	for i := 0; i < 3; i++ {
		r := postKey(t, ts, "a")
		if r.status != 200 {
			t.Fatalf("request %d: %d %s", i, r.status, r.body)
		}
		if got := r.header.Get("RateLimit-Policy"); got != `"rate";q=3;w=60` {
			t.Fatalf("RateLimit-Policy %q", got)
		}
		m := rateStateRE.FindStringSubmatch(r.header.Get("RateLimit"))
		if m == nil || m[1] != strconv.Itoa(2-i) || m[2] == "" {
			t.Fatalf("request %d: RateLimit %q, want r=%d and a reset", i, r.header.Get("RateLimit"), 2-i)
		}
	}
	r := postKey(t, ts, "a")
	e := checkError(t, r, 429, "rate_limited")
	if !strings.Contains(e.Error.Message, "alice") {
		t.Fatalf("message %q does not name the key", e.Error.Message)
	}
	// One request comes back every 20 s.
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 15 || ra > 20 {
		t.Fatalf("Retry-After %q, want about 20", r.header.Get("Retry-After"))
	}
	if m := rateStateRE.FindStringSubmatch(r.header.Get("RateLimit")); m == nil || m[1] != "0" {
		t.Fatalf("refused: RateLimit %q", r.header.Get("RateLimit"))
	}
	// Another key is not affected; the default policy is its.
	r = postKey(t, ts, "b")
	if r.status != 200 || r.header.Get("RateLimit-Policy") != `"rate";q=100;w=1` {
		t.Fatalf("bob: %d %q %s", r.status, r.header.Get("RateLimit-Policy"), r.body)
	}
}

// keyBlockingExec holds every execution until release is closed, sending one
// output chunk first when stream is set.
type keyBlockingExec struct {
	fakeExec
	started chan struct{}
	release chan struct{}
	running atomic.Int32
}

func (b *keyBlockingExec) Execute(ctx context.Context, req wire.Execute, onEvent func(client.Event)) (*client.Outcome, error) {
	b.running.Add(1)
	defer b.running.Add(-1)
	onEvent(client.Event{Type: wire.TypeStdout, Data: []byte("hi\n")})
	select {
	case b.started <- struct{}{}:
	default:
	}
	select {
	case <-b.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &client.Outcome{Result: []byte(`1`), Done: wire.Done{ExitReason: wire.ExitOK}}, nil
}

// A key's concurrency cap: while its executions hold every place the next
// is 429 rate_limited; a streamed execution holds its place until the
// stream ends; other keys are not affected.
func TestKeyConcurrencyCap(t *testing.T) {
	b := &keyBlockingExec{started: make(chan struct{}, 8), release: make(chan struct{})}
	file := keysFile(t, "alice:"+digestOf("a")+" concurrency=2 rate=off", "bob:"+digestOf("b")+" concurrency=1")
	ts := start(t, b, func(c *Config) { c.KeysFile = file })

	got := make(chan reply, 2)
	go func() {
		r, _ := tryDo("POST", ts.url+"/execute", "application/json", `{"script":"x"}`, bearer("a"))
		got <- r
	}()
	// The first must hold its place before the stream asks for the second.
	waitStarted(t, b.started)
	// The second holds its place as a stream.
	stream, err := http.NewRequest("POST", ts.url+"/execute", strings.NewReader(`{"script":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	stream.Header.Set("Content-Type", "application/json")
	stream.Header.Set("Accept", "application/x-ndjson")
	stream.Header.Set("Authorization", "Bearer a")
	resp, err := http.DefaultClient.Do(stream)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("RateLimit") != `"concurrency";r=0` || resp.Header.Get("RateLimit-Policy") != `"concurrency";q=2;qu="concurrent-requests"` {
		t.Fatalf("stream: %d RateLimit %q Policy %q", resp.StatusCode, resp.Header.Get("RateLimit"), resp.Header.Get("RateLimit-Policy"))
	}
	waitStarted(t, b.started)

	r := postKey(t, ts, "a")
	checkError(t, r, 429, "rate_limited")
	if r.header.Get("Retry-After") != "1" || r.header.Get("RateLimit") != `"concurrency";r=0` {
		t.Fatalf("refused: Retry-After %q RateLimit %q", r.header.Get("Retry-After"), r.header.Get("RateLimit"))
	}
	if b.running.Load() != 2 {
		t.Fatalf("%d executions running, want 2", b.running.Load())
	}
	// Bob has his own place.
	go func() {
		r, _ := tryDo("POST", ts.url+"/execute", "application/json", `{"script":"x"}`, bearer("b"))
		got <- r
	}()
	waitStarted(t, b.started)

	close(b.release)
	for i := 0; i < 2; i++ {
		if r := <-got; r.status != 200 {
			t.Fatalf("held request: %d %s", r.status, r.body)
		}
	}
	// Read the stream to its end: its place comes back only then.
	sc := bufio.NewScanner(resp.Body)
	lines := 0
	for sc.Scan() {
		lines++
	}
	if lines < 2 {
		t.Fatalf("stream had %d lines", lines)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := postKey(t, ts, "a")
		if r.status == 200 {
			if r.header.Get("RateLimit") != `"concurrency";r=1` {
				t.Fatalf("after the stream: RateLimit %q", r.header.Get("RateLimit"))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stream's place did not come back: %d %s", r.status, r.body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The keys file is reread when it changes: a new key works, a removed one
// stops working, two lines of one name (a rotation) share its quota, and a
// file that does not parse leaves the keys in force.
func TestKeysReload(t *testing.T) {
	file := keysFile(t, "alice:"+digestOf("old")+" rate=3/m")
	ts := start(t, &fakeExec{}, func(c *Config) { c.KeysFile = file; c.KeysPoll = 20 * time.Millisecond })
	waitStatus := func(key string, want int) reply {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			r := postKey(t, ts, key)
			if r.status == want {
				return r
			}
			if time.Now().After(deadline) {
				t.Fatalf("key %q: %d %s, want %d", key, r.status, r.body, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if r := postKey(t, ts, "old"); r.status != 200 {
		t.Fatalf("old key: %d %s", r.status, r.body)
	}
	// Rotation: both keys of alice, one quota (3 per minute; one used).
	writeKeys(t, file, "alice:"+digestOf("old")+" rate=3/m", "alice:"+digestOf("new")+" rate=3/m")
	waitStatus("new", 200)
	waitStatus("old", 429) // the third request of the quota was the old key's
	checkError(t, postKey(t, ts, "new"), 429, "rate_limited")

	// A broken file: the keys in force stay, the log says why.
	writeKeys(t, file, "alice:"+digestOf("new"), "carol:not-a-digest")
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(ts.logs.String(), "keys file "+file+" line 2") {
		if time.Now().After(deadline) {
			t.Fatalf("no error logged for the broken file:\n%s", ts.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	checkError(t, postKey(t, ts, "new"), 429, "rate_limited")

	// The old key removed, a new client added: the quota state of alice
	// stays (a rewrite refills nobody's bucket).
	writeKeys(t, file, "alice:"+digestOf("new")+" rate=3/m", "carol:"+digestOf("carol"))
	waitStatus("carol", 200)
	checkError(t, postKey(t, ts, "old"), 401, "unauthorized")
	checkError(t, postKey(t, ts, "new"), 429, "rate_limited")

	// A removed file keeps the keys in force too.
	os.Remove(file)
	time.Sleep(100 * time.Millisecond)
	if r := postKey(t, ts, "carol"); r.status != 200 {
		t.Fatalf("after the file went: %d %s", r.status, r.body)
	}
}

// Keys from the environment (Config.Keys) work alone and with a file; a
// file that cannot be read at start-up stops Serve with its reason.
func TestKeysFromEnvironmentAndStartErrors(t *testing.T) {
	ts := start(t, &fakeExec{}, func(c *Config) {
		c.Keys = "alice:" + digestOf("a") + " concurrency=1, bob:" + digestOf("b") + "\n"
	})
	for _, k := range []string{"a", "b"} {
		if r := postKey(t, ts, k); r.status != 200 {
			t.Fatalf("key %s: %d %s", k, r.status, r.body)
		}
	}
	checkError(t, postKey(t, ts, ""), 401, "unauthorized")

	// An empty file turns keys on and admits nobody, with a warning.
	empty := start(t, &fakeExec{}, func(c *Config) { c.KeysFile = keysFile(t, "# nobody yet") })
	checkError(t, postKey(t, empty, "a"), 401, "unauthorized")
	if !strings.Contains(empty.logs.String(), "none is listed") {
		t.Fatalf("no warning about an empty keys file:\n%s", empty.logs.String())
	}

	cfg := testConfig()
	cfg.KeysFile = filepath.Join(t.TempDir(), "missing")
	g := New(cfg, &fakeExec{}, cfg.NewLogger(&syncBuffer{}).WithField("test", t.Name()))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	err = g.Serve(context.Background(), ln)
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("Serve with a missing keys file = %v", err)
	}
}

// The lines the keys file and PYEXEC_KEYS take, and the errors that name
// what is wrong.
func TestParseKeys(t *testing.T) {
	d := digestOf("k")
	def := KeyPolicy{Quota: 60, Window: time.Minute, Concurrency: 4}
	good := []struct {
		text string
		want KeyPolicy
	}{
		{"a:" + d, def},
		{"a:" + strings.ToUpper(d) + " rate=10/s", KeyPolicy{Quota: 10, Window: time.Second, Concurrency: 4}},
		{"a.b@c-d_e:" + d + " rate=100/10s concurrency=0", KeyPolicy{Quota: 100, Window: 10 * time.Second, Concurrency: 0}},
		{"a:" + d + " rate=off concurrency=9", KeyPolicy{Quota: 0, Window: 0, Concurrency: 9}},
		{"a:" + d + " rate=5/h", KeyPolicy{Quota: 5, Window: time.Hour, Concurrency: 4}},
	}
	for _, tc := range good {
		set := &keySet{policies: map[string]KeyPolicy{}}
		if err := parseKeys(set, tc.text, "f", false, def); err != nil {
			t.Errorf("%q: %v", tc.text, err)
			continue
		}
		name := strings.SplitN(tc.text, ":", 2)[0]
		if got := set.policies[name]; got != tc.want {
			t.Errorf("%q: policy %+v, want %+v", tc.text, got, tc.want)
		}
	}
	bad := []struct{ text, want string }{
		{"a", "want name:sha256hex"},
		{"a:pyx_secretkey", "not the key"},
		{"a:" + d[:60], "64 hex digits"},
		{"-a:" + d, "name"},
		{"a:" + d + " rate=10", "QUOTA/WINDOW"},
		{"a:" + d + " rate=10/500ms", "whole seconds"},
		{"a:" + d + " rate=-1/s", "positive"},
		{"a:" + d + " concurrency=x", "non-negative"},
		{"a:" + d + " burst=3", "unknown setting"},
		{"a:" + d + "\nb:" + d, "listed twice"},
		{"a:" + d + " rate=1/s\na:" + digestOf("j") + " rate=2/s", "must agree"},
	}
	for _, tc := range bad {
		err := parseKeys(&keySet{policies: map[string]KeyPolicy{}}, tc.text, "f", false, def)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one saying %q", tc.text, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "pyx_secretkey") {
			t.Errorf("%q: the error echoes the key: %v", tc.text, err)
		}
	}
	if err := parseKeys(&keySet{policies: map[string]KeyPolicy{}}, "a:"+d+",b:"+digestOf("j"), "PYEXEC_KEYS", true, def); err != nil {
		t.Errorf("comma-separated list: %v", err)
	}
	// Validate checks the flags' values.
	for _, tweak := range []func(*Config){
		func(c *Config) { c.KeyRate = "fast" },
		func(c *Config) { c.KeyConcurrency = -1 },
		func(c *Config) { c.KeysPoll = -time.Second },
		func(c *Config) { c.Keys = "alice:secret" },
	} {
		c := testConfig()
		tweak(&c)
		if c.Validate() == nil {
			t.Errorf("Validate accepted %+v", c)
		}
	}
}

// Reload reports a change only when the file's content changed (a file
// without a final newline included), so the poll logs nothing while the file
// stays as it is.
func TestKeysReloadOnlyOnChange(t *testing.T) {
	p := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(p, []byte("a:"+digestOf("a")), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.KeysFile = p
	k := newKeys(cfg, cfg.NewLogger(&syncBuffer{}).WithField("test", t.Name()))
	for i, want := range []bool{true, false, false} {
		changed, err := k.Reload()
		if err != nil || changed != want {
			t.Fatalf("reload %d: changed %v err %v, want %v", i, changed, err, want)
		}
	}
	if k.lookup([]byte("a")) != "a" || k.lookup([]byte("b")) != "" {
		t.Fatal("lookup")
	}
	writeKeys(t, p, "a:"+digestOf("a"), "b:"+digestOf("b"))
	if changed, err := k.Reload(); err != nil || !changed || k.lookup([]byte("b")) != "b" {
		t.Fatalf("after a change: changed %v err %v", changed, err)
	}
}
