package gateway

// Tests that keep the repository's documents honest about the code: the
// flags the README and the API reference name exist in the binaries (and
// every flag the binaries define is documented), the error tables list
// exactly the error types the gateway can answer with and the status each
// gets, every relative link of a document reaches a file and heading that
// exist, and every code comment that cites the architecture document cites
// the repository's own docs/ARCHITECTURE.md at a section it has.

import (
	"bufio"
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode"

	"github.com/python-executor/python-executor/wire"
)

// docsRoot is the checkout: the gateway package's parent.
func docsRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no go.mod in %s: %v", root, err)
	}
	return root
}

func readDoc(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(docsRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// withoutFences blanks the fenced code blocks of a Markdown text (shell
// examples name curl's and docker's flags, not ours), keeping line count.
func withoutFences(md string) string {
	var b strings.Builder
	in := false
	for _, line := range strings.SplitAfter(md, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			in = !in
			b.WriteString("\n")
			continue
		}
		if in {
			b.WriteString("\n")
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}

var codeSpan = regexp.MustCompile("`([^`\n]+)`")

// docFlag is a flag a document names, and which binaries it says have it.
type docFlag struct {
	name  string
	binas []string // "gateway", "supervisor"; both when the text says "(both"; nil = either
	where string
}

// notOurFlags are single-dash flags the documents name in code spans that
// belong to other programs.
var notOurFlags = map[string]string{
	"e": "docker/podman run -e (the container recipes)",
}

// documentedFlags returns the flags of our binaries that md names: code
// spans that start with "-name", "gateway -name" or "supervisor -name".
// Spans of other commands ("go test -fuzz", "mktemp -d", "curl -d") and
// double-dash flags (docker's) are not ours.
func documentedFlags(md, file string) []docFlag {
	var out []docFlag
	text := withoutFences(md)
	for _, m := range codeSpan.FindAllStringSubmatchIndex(text, -1) {
		span := text[m[2]:m[3]]
		after := text[m[1]:min(len(text), m[1]+8)]
		line := strings.Count(text[:m[0]], "\n") + 1
		f := docFlag{where: fmt.Sprintf("%s:%d `%s`", file, line, span)}
		rest := span
		for _, bin := range []string{"gateway", "supervisor"} {
			if strings.HasPrefix(span, bin+" -") {
				f.binas = []string{bin}
				rest = strings.TrimPrefix(span, bin+" ")
			}
		}
		if !strings.HasPrefix(rest, "-") || strings.HasPrefix(rest, "--") {
			continue
		}
		name := strings.TrimPrefix(rest, "-")
		if i := strings.IndexAny(name, " ="); i >= 0 {
			name = name[:i]
		}
		if _, ok := notOurFlags[name]; ok && f.binas == nil {
			continue
		}
		if f.binas == nil && strings.HasPrefix(after, " (both") {
			f.binas = []string{"gateway", "supervisor"}
		}
		f.name = name
		out = append(out, f)
	}
	return out
}

var (
	helpOnce  sync.Once
	helpFlags map[string]map[string]bool
	helpText  string // both binaries' -help output
	helpErr   error
)

var helpLine = regexp.MustCompile(`^\s+-([A-Za-z0-9][A-Za-z0-9_.-]*)`)

// binaryFlags builds cmd/gateway and cmd/supervisor (or takes them from
// PYEXEC_TEST_BIN_DIR) and returns the flags each lists in its -help.
func binaryFlags(t *testing.T) map[string]map[string]bool {
	t.Helper()
	helpOnce.Do(func() {
		root := docsRoot(t)
		dir := os.Getenv("PYEXEC_TEST_BIN_DIR")
		if dir == "" {
			var err error
			if dir, err = os.MkdirTemp("", "pyexec-docs-bin-"); err != nil {
				helpErr = err
				return
			}
			defer os.RemoveAll(dir)
			cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/supervisor", "./cmd/gateway")
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				helpErr = fmt.Errorf("go build: %v\n%s", err, out)
				return
			}
		}
		helpFlags = map[string]map[string]bool{}
		for _, bin := range []string{"gateway", "supervisor"} {
			cmd := exec.Command(filepath.Join(dir, bin), "-help")
			// A clean environment: a PYEXEC_* variable of the caller's
			// that does not parse must not fail the listing.
			cmd.Env = []string{"PATH=/usr/bin:/bin"}
			out, err := cmd.CombinedOutput()
			if err != nil {
				helpErr = fmt.Errorf("%s -help: %v\n%s", bin, err, out)
				return
			}
			helpText += string(out)
			flags := map[string]bool{}
			sc := bufio.NewScanner(bytes.NewReader(out))
			for sc.Scan() {
				if m := helpLine.FindStringSubmatch(sc.Text()); m != nil {
					flags[m[1]] = true
				}
			}
			if len(flags) < 5 {
				helpErr = fmt.Errorf("%s -help lists only %d flags; is its output still the flag package's?\n%s", bin, len(flags), out)
				return
			}
			helpFlags[bin] = flags
		}
	})
	if helpErr != nil {
		t.Fatal(helpErr)
	}
	return helpFlags
}

// flagDocs are the documents that describe the binaries' flags.
var flagDocs = []string{"README.md", "gateway/API.md", "docs/ARCHITECTURE.md"}

// TestDocumentedFlagsExist fails when a document names a flag that neither
// binary (or not the binary it names) defines.
func TestDocumentedFlagsExist(t *testing.T) {
	have := binaryFlags(t)
	n := 0
	for _, doc := range flagDocs {
		for _, f := range documentedFlags(readDoc(t, doc), doc) {
			n++
			if f.binas == nil {
				if !have["gateway"][f.name] && !have["supervisor"][f.name] {
					t.Errorf("%s: neither binary has a flag -%s", f.where, f.name)
				}
				continue
			}
			for _, bin := range f.binas {
				if !have[bin][f.name] {
					t.Errorf("%s: %s has no flag -%s", f.where, bin, f.name)
				}
			}
		}
	}
	if n < 20 {
		t.Fatalf("found only %d flags in %v: has the README's configuration table moved?", n, flagDocs)
	}
}

// TestEveryFlagIsDocumented fails when a binary defines a flag that no
// document names.
func TestEveryFlagIsDocumented(t *testing.T) {
	have := binaryFlags(t)
	named := map[string]bool{}
	for _, doc := range flagDocs {
		for _, f := range documentedFlags(readDoc(t, doc), doc) {
			named[f.name] = true
		}
	}
	for _, bin := range []string{"gateway", "supervisor"} {
		for name := range have[bin] {
			if name != "help" && !named[name] {
				t.Errorf("%s -%s is named in none of %v (the README's Configuration table is the place)", bin, name, flagDocs)
			}
		}
	}
}

var envName = regexp.MustCompile(`PYEXEC_[A-Z0-9_]*[A-Z0-9]`)

// TestDocumentedEnvironmentExists fails when a document names a PYEXEC_*
// variable that nothing reads: no source file of the checkout (Go, shell,
// Python, the Dockerfile, manifests) and no -help names it, whole or as the
// quoted suffix a binder prefixes with "PYEXEC_", and no flag has its name.
func TestDocumentedEnvironmentExists(t *testing.T) {
	have := binaryFlags(t)
	root := docsRoot(t)
	var corpus strings.Builder
	corpus.WriteString(helpText)
	exts := []string{".go", ".sh", ".py", ".yaml", ".yml"}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "bin" || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Name() == "docs_test.go" || (!slices.Contains(exts, filepath.Ext(path)) && d.Name() != "Dockerfile" && d.Name() != "Makefile") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		corpus.Write(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	text := corpus.String()
	seen := map[string]bool{}
	for _, doc := range flagDocs {
		for _, name := range envName.FindAllString(readDoc(t, doc), -1) {
			if seen[name] {
				continue
			}
			seen[name] = true
			suffix := strings.TrimPrefix(name, "PYEXEC_")
			flag := strings.ReplaceAll(strings.ToLower(suffix), "_", "-")
			if strings.Contains(text, name) || strings.Contains(text, `"`+suffix+`"`) || have["gateway"][flag] || have["supervisor"][flag] {
				continue
			}
			t.Errorf("%s names %s, which nothing in the checkout reads", doc, name)
		}
	}
	if len(seen) < 20 {
		t.Fatalf("found only %d PYEXEC_* variables in %v", len(seen), flagDocs)
	}
}

func TestDocumentedFlagsParser(t *testing.T) {
	md := "x `-a` (both) `gateway -b` `supervisor -c=1` `-d` `--privileged` `go test -fuzz X` `-e` `mktemp -d`\n```\n`-z`\n```\n"
	got := documentedFlags(md, "t.md")
	want := []string{"a:gateway,supervisor", "b:gateway", "c:supervisor", "d:"}
	var have []string
	for _, f := range got {
		have = append(have, f.name+":"+strings.Join(f.binas, ","))
	}
	if !slices.Equal(have, want) {
		t.Fatalf("got %v, want %v", have, want)
	}
}

// errorTypeConsts parses the module's non-test Go files and returns the
// values of the constants of type ErrorType declared in package wire
// (inWire) and of type wire.ErrorType declared in package gateway, the
// types the gateway adds (others). It
// reads the sources rather than listing the constants here, so that a new
// error type cannot be forgotten by this test as well.
func errorTypeConsts(t *testing.T) (inWire, others map[string]string) {
	t.Helper()
	inWire, others = map[string]string{}, map[string]string{}
	root := docsRoot(t)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				var into map[string]string
				switch typ := vs.Type.(type) {
				case *ast.Ident:
					if typ.Name == "ErrorType" && f.Name.Name == "wire" {
						into = inWire
					}
				case *ast.SelectorExpr:
					if x, ok := typ.X.(*ast.Ident); ok && x.Name == "wire" && typ.Sel.Name == "ErrorType" && f.Name.Name == "gateway" {
						into = others
					}
				}
				if into == nil {
					continue
				}
				for i, v := range vs.Values {
					lit, ok := v.(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						return fmt.Errorf("%s: %s is not a string literal", rel, vs.Names[i].Name)
					}
					s, _ := strconv.Unquote(lit.Value)
					into[s] = rel + ": " + vs.Names[i].Name
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(inWire) < 10 {
		t.Fatalf("found only %d wire error types: has package wire moved out of the module?", len(inWire))
	}
	return inWire, others
}

var tableRow = regexp.MustCompile("^\\|\\s*`([a-z_]+)`\\s*\\|\\s*(\\d{3})\\s*\\|")

// errorTable returns the "| type | status | ... |" table of md: type ->
// status, and the rows in order.
func errorTable(t *testing.T, md, file string) map[string]int {
	t.Helper()
	rows := map[string]int{}
	in := false
	for _, line := range strings.Split(md, "\n") {
		switch {
		case strings.HasPrefix(line, "| type | status |"):
			if in || len(rows) > 0 {
				t.Fatalf("%s: more than one error table", file)
			}
			in = true
		case in && strings.HasPrefix(line, "|---"):
		case in && strings.HasPrefix(line, "|"):
			m := tableRow.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("%s: error table row %q: want | `type` | status | ... |", file, line)
			}
			if _, dup := rows[m[1]]; dup {
				t.Errorf("%s: error type %s listed twice", file, m[1])
			}
			rows[m[1]], _ = strconv.Atoi(m[2])
		case in:
			in = false
		}
	}
	if len(rows) == 0 {
		t.Fatalf("%s: no error table (a header line \"| type | status |\")", file)
	}
	return rows
}

// TestErrorTablesMatchTheCode fails when the README's or the API
// reference's error table misses a type the gateway can answer with, lists
// one it cannot, or gives a status other than statusFor's; and when a
// protocol type that never reaches HTTP goes unmentioned in the API
// reference.
func TestErrorTablesMatchTheCode(t *testing.T) {
	inWire, inGateway := errorTypeConsts(t)
	// What an HTTP client can see: the gateway's own types, the
	// supervisor's that it passes through, and internal.
	visible := map[string]bool{string(wire.ErrInternal): true}
	for s := range inGateway {
		visible[s] = true
	}
	for typ := range defaultMessages {
		visible[string(typ)] = true
	}
	for s := range visible {
		if _, ok := inWire[s]; !ok && inGateway[s] == "" {
			t.Errorf("%s is answered but declared nowhere", s)
		}
	}
	api := readDoc(t, "gateway/API.md")
	for _, doc := range []string{"README.md", "gateway/API.md"} {
		rows := errorTable(t, readDoc(t, doc), doc)
		for s := range visible {
			status, ok := rows[s]
			switch {
			case !ok:
				t.Errorf("%s: the error table lacks %s (%d)", doc, s, statusFor(wire.ErrorType(s)))
			case status != statusFor(wire.ErrorType(s)):
				t.Errorf("%s: the error table gives %s status %d; the gateway answers %d", doc, s, status, statusFor(wire.ErrorType(s)))
			}
		}
		for s := range rows {
			if !visible[s] {
				t.Errorf("%s: the error table lists %s, which the gateway never answers with", doc, s)
			}
		}
	}
	// The rest of the wire types are the protocol's own (a refused
	// connection): the API reference says they become internal.
	var hidden []string
	for s := range inWire {
		if !visible[s] {
			hidden = append(hidden, s)
			if !strings.Contains(api, "`"+s+"`") {
				t.Errorf("gateway/API.md does not mention %s (%s), a protocol error type the gateway answers as internal", s, inWire[s])
			}
		}
	}
	sort.Strings(hidden)
	t.Logf("protocol-only types: %v", hidden)
}

var heading = regexp.MustCompile(`^#{1,6}\s+(.*?)\s*$`)

// headingAnchors returns the anchors GitHub gives md's headings.
func headingAnchors(md string) map[string]bool {
	anchors := map[string]bool{}
	seen := map[string]int{}
	for _, line := range strings.Split(withoutFences(md), "\n") {
		m := heading.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		slug := slugify(m[1])
		if n := seen[slug]; n > 0 {
			anchors[fmt.Sprintf("%s-%d", slug, n)] = true
		} else {
			anchors[slug] = true
		}
		seen[slug]++
	}
	return anchors
}

// slugify is GitHub's heading anchor: lower case, punctuation dropped
// (but '-' and '_'), spaces to '-'. Code spans and links lose their marks.
func slugify(heading string) string {
	heading = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`).ReplaceAllString(heading, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// repoMarkdown lists the Markdown files of the checkout.
func repoMarkdown(t *testing.T) []string {
	t.Helper()
	root := docsRoot(t)
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "bin" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".md") {
			rel, _ := filepath.Rel(root, path)
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// checkTarget reports what is wrong with a relative reference "path#anchor"
// made from the directory dir (relative to the checkout): "" when the file
// and the heading exist.
func checkTarget(root, dir, target string) string {
	path, anchor, _ := strings.Cut(target, "#")
	file := filepath.Join(root, dir, path)
	if path == "" {
		return "empty path"
	}
	st, err := os.Stat(file)
	if err != nil {
		return "no such file"
	}
	if anchor == "" {
		return ""
	}
	if st.IsDir() || !strings.HasSuffix(file, ".md") {
		return "an anchor into a file that is not Markdown"
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return err.Error()
	}
	if !headingAnchors(string(b))[anchor] {
		return "no heading with anchor #" + anchor
	}
	return ""
}

// TestMarkdownLinks fails when a relative link of a Markdown file of the
// checkout points to a file or a heading that does not exist.
func TestMarkdownLinks(t *testing.T) {
	root := docsRoot(t)
	files := repoMarkdown(t)
	for _, must := range []string{"README.md", "docs/ARCHITECTURE.md", "gateway/API.md"} {
		if !slices.Contains(files, must) {
			t.Errorf("%s is missing", must)
		}
	}
	links := 0
	for _, rel := range files {
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		text := withoutFences(string(b))
		for _, m := range mdLink.FindAllStringSubmatchIndex(text, -1) {
			target := text[m[2]:m[3]]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			links++
			line := strings.Count(text[:m[0]], "\n") + 1
			if strings.HasPrefix(target, "#") {
				if !headingAnchors(string(b))[target[1:]] {
					t.Errorf("%s:%d: link %s: no such heading here", rel, line, target)
				}
				continue
			}
			if strings.HasPrefix(target, "/") {
				t.Errorf("%s:%d: link %s: absolute; links stay inside the repository, relative", rel, line, target)
				continue
			}
			if why := checkTarget(root, filepath.Dir(rel), target); why != "" {
				t.Errorf("%s:%d: link %s: %s", rel, line, target, why)
			}
		}
	}
	if links < 10 {
		t.Fatalf("found only %d relative links", links)
	}
}

var archCite = regexp.MustCompile(`(\S*)ARCHITECTURE\.md(#[A-Za-z0-9_-]+)?`)

// TestCommentsCiteTheRepositorysArchitecture fails when a source file
// mentions an ARCHITECTURE.md other than docs/ARCHITECTURE.md#<anchor>
// with an anchor the document has: comments point inside the repository.
func TestCommentsCiteTheRepositorysArchitecture(t *testing.T) {
	root := docsRoot(t)
	arch, err := os.ReadFile(filepath.Join(root, "docs", "ARCHITECTURE.md"))
	if err != nil {
		t.Fatal(err)
	}
	anchors := headingAnchors(string(arch))
	exts := []string{".go", ".py", ".sh", ".yaml", ".yml", ".toml", ".cfg"}
	cites := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		base := filepath.Base(path)
		if !slices.Contains(exts, filepath.Ext(path)) && base != "Makefile" && base != "Dockerfile" {
			return nil
		}
		if base == "docs_test.go" {
			return nil // this file names the pattern
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		for i, line := range strings.Split(string(b), "\n") {
			for _, m := range archCite.FindAllStringSubmatch(line, -1) {
				cites++
				prefix, anchor := m[1], strings.TrimPrefix(m[2], "#")
				switch {
				case !strings.HasSuffix(prefix, "docs/"):
					t.Errorf("%s:%d: cites %q: cite docs/ARCHITECTURE.md#<section>, the repository's own", rel, i+1, m[0])
				case anchor == "":
					t.Errorf("%s:%d: cites %q without a section (#anchor)", rel, i+1, m[0])
				case !anchors[anchor]:
					t.Errorf("%s:%d: cites %q: docs/ARCHITECTURE.md has no heading #%s", rel, i+1, m[0], anchor)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if cites == 0 {
		t.Fatal("no source file cites docs/ARCHITECTURE.md; expected at least the package docs")
	}
}

func TestSlugify(t *testing.T) {
	for in, want := range map[string]string{
		"Warm engine: zygotes, spares, orders": "warm-engine-zygotes-spares-orders",
		"The runner's contract":                "the-runners-contract",
		"`-degraded` and tiers":                "-degraded-and-tiers",
		"One execution (cold engine)":          "one-execution-cold-engine",
		"Isolation tiers":                      "isolation-tiers",
	} {
		if got := slugify(in); got != want {
			t.Errorf("slugify(%q) = %q, want %q", in, got, want)
		}
	}
}
