package playground

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/python-executor/python-executor/limits"
)

func TestRender(t *testing.T) {
	p, err := Render()
	if err != nil {
		t.Fatal(err)
	}
	html := string(p.HTML)
	if strings.Contains(html, limitsMarker) || strings.Contains(html, scriptMarker) {
		t.Fatal("a marker was left in the page")
	}
	// The CSP's hash is the hash of the inline script exactly as the
	// browser reads it: the text between <script> and </script>.
	m := regexp.MustCompile(`(?s)<script>(.*?)</script>`).FindAllStringSubmatch(html, -1)
	if len(m) != 1 {
		t.Fatalf("%d executable inline scripts, want 1", len(m))
	}
	sum := sha256.Sum256([]byte(m[0][1]))
	if want := "script-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; !strings.Contains(p.CSP, want) {
		t.Fatalf("CSP %q lacks %q", p.CSP, want)
	}
	// No script from elsewhere, no CDN: the page works offline.
	if regexp.MustCompile(`(?i)<script[^>]+src=|<link[^>]+href=|https?://`).MatchString(strings.ReplaceAll(html, string(script), "")) {
		t.Error("the page refers to something outside itself")
	}
	// The limit fields' data parses and lists every request limit.
	d := regexp.MustCompile(`(?s)<script type="application/json" id="limit-fields">(.*?)</script>`).FindStringSubmatch(html)
	var fields []LimitField
	if d == nil || json.Unmarshal([]byte(d[1]), &fields) != nil {
		t.Fatalf("limit fields data missing or not JSON")
	}
	n := 0
	for _, l := range limits.Table {
		if l.HTTP != "" {
			if n >= len(fields) || fields[n].Field != l.HTTP {
				t.Fatalf("limit field %d is %+v, want %s", n, fields, l.HTTP)
			}
			n++
		}
	}
	if n != len(fields) || n < 5 {
		t.Fatalf("%d limit fields for %d request limits", len(fields), n)
	}
}

func TestLimitFieldPlaceholders(t *testing.T) {
	got := map[string]LimitField{}
	for _, f := range LimitFields() {
		got[f.Field] = f
	}
	for field, want := range map[string]string{"timeout": "s default 30", "memory_mb": "MiB default 512", "pids": " default 64", "output_bytes": "bytes default 1048576"} {
		f := got[field]
		if s := f.Unit + " " + f.Placeholder; s != want {
			t.Errorf("%s: %q, want %q", field, s, want)
		}
	}
	if got["timeout"].Integer || !got["memory_mb"].Integer {
		t.Error("timeout must take fractions, memory_mb whole numbers")
	}
}

// The committed bundle was built from the committed sources: its header's
// digest is the digest build.mjs computes (sourcesDigest there), so editing
// web/src or the lock file without `make playground` fails here.
func TestBundleIsCurrent(t *testing.T) {
	m := regexp.MustCompile(`(?m)^// sources-sha256: ([0-9a-f]{64})$`).FindSubmatch(script)
	if m == nil {
		t.Fatal("assets/playground.js has no sources-sha256 line: not built by web/build.mjs")
	}
	if !strings.HasPrefix(string(script), "// GENERATED FILE: do not edit.") {
		t.Error("assets/playground.js does not say it is generated")
	}
	files := []string{"build.mjs", "package-lock.json"}
	src, err := os.ReadDir("web/src")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range src {
		files = append(files, "src/"+e.Name())
	}
	sort.Strings(files)
	var list strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join("web", f))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&list, "%x  %s\n", sha256.Sum256(b), f)
	}
	sum := sha256.Sum256([]byte(list.String()))
	if got := hex.EncodeToString(sum[:]); got != string(m[1]) {
		t.Fatalf("assets/playground.js was built from other sources (digest %s, sources now %s): run make playground and commit the bundle", m[1], got)
	}
}
