package importrules

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// modulePackages lists the module's packages and their imports (test
// imports aside: a test may start a privileged supervisor, the binary may
// not link one) with go list, paths relative to the module.
func modulePackages(t *testing.T) []Package {
	t.Helper()
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if root == "." || root == "" {
		t.Fatal("not inside a module")
	}
	modPath, err := exec.Command("go", "list", "-m", "-f", "{{.Path}}").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	mod := strings.TrimSpace(string(modPath))
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports,Error", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	rel := func(p string) (string, bool) {
		r, ok := strings.CutPrefix(p, mod+"/")
		return r, ok
	}
	var pkgs []Package
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			ImportPath string
			Imports    []string
			Error      *struct{ Err string }
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		if p.Error != nil {
			t.Fatalf("go list %s: %s", p.ImportPath, p.Error.Err)
		}
		path, ok := rel(p.ImportPath)
		if !ok {
			t.Fatalf("go list ./... listed %s, outside module %s", p.ImportPath, mod)
		}
		pkg := Package{Path: path}
		for _, imp := range p.Imports {
			// Packages outside the module cannot lead back into it.
			if r, ok := rel(imp); ok {
				pkg.Imports = append(pkg.Imports, r)
			}
		}
		pkgs = append(pkgs, pkg)
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d packages: %+v", len(pkgs), pkgs)
	}
	return pkgs
}

func TestModuleFollowsTheImportRules(t *testing.T) {
	violations, unused := Check(modulePackages(t), Rules)
	for _, v := range violations {
		t.Errorf("import rule broken: %s", v)
	}
	for _, name := range unused {
		t.Errorf("import rule %q applies to no package of the module: a package was renamed; update the table in rules.go", name)
	}
}

// The real rules on the real graph fail once the gateway imports the
// supervisor, or jail an engine, even through another package.
func TestModuleRulesCatchAnAddedImport(t *testing.T) {
	module := modulePackages(t)
	for _, tc := range []struct{ from, to, rule string }{
		{"gateway", "supervisor", Rules[0].Name},
		{"gateway", "internal/engine/warm", Rules[0].Name},
		{"cmd/gateway", "internal/jail", Rules[0].Name},
		{"wire", "supervisor", Rules[0].Name},
		{"client", "internal/proc", Rules[0].Name},
		{"limits", "internal/engine", Rules[0].Name},
		{"internal/jail", "supervisor", Rules[1].Name},
		{"internal/jail", "internal/engine/cold", Rules[1].Name},
		{"internal/engine/cold", "internal/engine/warm", Rules[4].Name},
	} {
		pkgs := make([]Package, len(module))
		for i, p := range module {
			pkgs[i] = Package{Path: p.Path, Imports: append([]string(nil), p.Imports...)}
		}
		found := false
		for i := range pkgs {
			if pkgs[i].Path == tc.from {
				pkgs[i].Imports = append(pkgs[i].Imports, tc.to)
				found = true
			}
		}
		if !found {
			t.Fatalf("no package %s in the module", tc.from)
		}
		violations, _ := Check(pkgs, Rules)
		caught := false
		for _, v := range violations {
			if v.Rule == tc.rule && v.Chain[0] == tc.from && v.Chain[len(v.Chain)-1] == tc.to {
				caught = true
			}
		}
		if !caught {
			t.Errorf("%s importing %s: not caught by %q (violations: %v)", tc.from, tc.to, tc.rule, violations)
		}
	}
}

// The checker itself, on a made-up graph.
func TestCheckFindsForbiddenDependencies(t *testing.T) {
	pkgs := []Package{
		{Path: "gateway", Imports: []string{"client", "wire", "gateway/util"}},
		{Path: "gateway/util", Imports: []string{"limits"}},
		{Path: "limits", Imports: []string{"internal/proc"}}, // a public package gone bad
		{Path: "cmd/gateway", Imports: []string{"gateway", "client"}},
		{Path: "client", Imports: []string{"wire"}},
		{Path: "wire", Imports: []string{"internal/engine"}},
		{Path: "internal/jail", Imports: []string{"supervisor"}},
		{Path: "supervisor", Imports: []string{"internal/engine", "internal/engine/cold", "internal/engine/warm", "wire"}},
		{Path: "internal/engine", Imports: []string{"internal/proc", "wire"}},
		{Path: "internal/engine/cold", Imports: []string{"internal/engine"}},
		{Path: "internal/engine/warm", Imports: []string{"internal/engine", "internal/engine/cold"}},
		{Path: "internal/proc"},
	}
	got, unused := Check(pkgs, Rules)
	var chains []string
	for _, v := range got {
		chains = append(chains, strings.Join(v.Chain, " -> "))
	}
	want := []string{
		// rule 0: gateway, cmd/gateway, the protocol packages
		"cmd/gateway -> gateway -> gateway/util -> limits -> internal/proc",
		"cmd/gateway -> client -> wire -> internal/engine",
		"gateway -> gateway/util -> limits -> internal/proc",
		"gateway -> wire -> internal/engine",
		"gateway/util -> limits -> internal/proc",
		"limits -> internal/proc",
		"client -> wire -> internal/engine",
		"wire -> internal/engine",
		// rule 1: jail
		"internal/jail -> supervisor",
		// rule 5: the warm engine
		"internal/engine/warm -> internal/engine/cold",
	}
	sort.Strings(chains)
	sort.Strings(want)
	if !reflect.DeepEqual(chains, want) {
		t.Errorf("violations:\n  %s\nwant:\n  %s", strings.Join(chains, "\n  "), strings.Join(want, "\n  "))
	}
	if len(unused) != 0 {
		t.Errorf("rules reported as applying to nothing: %v", unused)
	}

	// The same graph without the bad edges passes.
	clean := []Package{
		{Path: "gateway", Imports: []string{"client", "wire"}},
		{Path: "cmd/gateway", Imports: []string{"gateway", "client"}},
		{Path: "client", Imports: []string{"wire"}},
		{Path: "wire"},
		{Path: "internal/jail", Imports: []string{"wire"}},
		{Path: "supervisor", Imports: []string{"internal/engine/cold", "internal/engine/warm", "internal/jail", "wire"}},
		{Path: "internal/engine", Imports: []string{"internal/proc", "internal/jail", "wire"}},
		{Path: "internal/engine/cold", Imports: []string{"internal/engine", "internal/proc"}},
		{Path: "internal/engine/warm", Imports: []string{"internal/engine", "internal/proc"}},
		{Path: "internal/proc"},
	}
	if got, unused := Check(clean, Rules); len(got) != 0 || len(unused) != 0 {
		t.Errorf("clean graph: violations %v, unused rules %v", got, unused)
	}

	// A rule whose packages are all gone is reported, not passed.
	if _, unused := Check([]Package{{Path: "gateway"}}, Rules); len(unused) != len(Rules)-1 {
		t.Errorf("only gateway in the graph: unused rules %v, want all but the first", unused)
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, path string
		want          bool
	}{
		{"supervisor", "supervisor", true},
		{"supervisor", "supervisor/sub", false},
		{"supervisor/...", "supervisor", true},
		{"supervisor/...", "supervisor/sub", true},
		{"supervisor/...", "supervisortest", false},
		{"jail/...", "internal/jail", false},
		{"internal/jail/...", "internal/jail", true},
	} {
		if got := Match(tc.pattern, tc.path); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.pattern, tc.path, got, tc.want)
		}
	}
}
