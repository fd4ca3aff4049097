// Package importrules states which packages of the module may depend on
// which, and checks a package graph against those rules; its test runs the
// check on the module itself (go list), so a change that makes the
// unprivileged gateway link privileged code, or jail depend on the
// supervisor, fails the build's tests.
//
// Patterns are import paths relative to the module: "x" is that package
// only, "x/..." is x and every package below it. A pattern that matches
// nothing is harmless, but every rule must apply to at least one package of
// the module, so renaming a package cannot silently switch its rule off.
package importrules

import (
	"fmt"
	"sort"
	"strings"
)

// Rule forbids the packages matching From to depend, directly or through
// other packages, on a package matching Forbidden unless it also matches
// Except.
type Rule struct {
	Name      string
	From      []string
	Forbidden []string
	Except    []string
}

// privileged is what only the privileged supervisor may link: the
// supervisor and its test harness, the engines and their process helpers,
// and jail (which alone knows nsjail).
var privileged = []string{
	"supervisor/...",
	"internal/engine/...",
	"internal/proc/...",
	"internal/supervisortest/...",
	"internal/jail/...",
}

// protocol is the public interface of the supervisor: what any package may
// import.
var protocol = []string{"wire/...", "client/..."}

// Rules are the module's import rules.
var Rules = []Rule{
	{
		Name:      "the unprivileged gateway, the CLI, the protocol packages and the limit table link nothing privileged",
		From:      append([]string{"gateway/...", "cmd/gateway", "cmd/pyexec", "limits/...", "config/...", "cloudlog/..."}, protocol...),
		Forbidden: privileged,
		Except:    protocol,
	},
	{
		Name:      "jail knows nsjail, not the supervisor or the engines that run it",
		From:      []string{"internal/jail/..."},
		Forbidden: []string{"supervisor/...", "internal/engine/...", "internal/supervisortest/..."},
		Except:    protocol,
	},
	{
		Name:      "the process helpers are below the engines and the supervisor",
		From:      []string{"internal/proc/..."},
		Forbidden: []string{"supervisor/...", "internal/engine/..."},
		Except:    protocol,
	},
	{
		Name:      "what the engines share knows neither engine nor the supervisor",
		From:      []string{"internal/engine"},
		Forbidden: []string{"supervisor/...", "internal/engine/cold/...", "internal/engine/warm/..."},
		Except:    protocol,
	},
	{
		Name:      "the cold engine does not use the warm one or the supervisor",
		From:      []string{"internal/engine/cold/..."},
		Forbidden: []string{"supervisor/...", "internal/engine/warm/..."},
		Except:    protocol,
	},
	{
		Name:      "the warm engine does not use the cold one or the supervisor",
		From:      []string{"internal/engine/warm/..."},
		Forbidden: []string{"supervisor/...", "internal/engine/cold/..."},
		Except:    protocol,
	},
}

// Package is one package of the module and its direct imports, import
// paths relative to the module ("gateway", "wire"). Imports from
// outside the module may be listed; they match no pattern of the module.
type Package struct {
	Path    string
	Imports []string
}

// Violation is a package that depends on what a rule forbids it, with the
// chain of imports that leads there (From first, the forbidden package
// last).
type Violation struct {
	Rule  string
	Chain []string
}

func (v Violation) String() string {
	return fmt.Sprintf("%s: %s", v.Rule, strings.Join(v.Chain, " -> "))
}

// Match reports whether the relative import path p matches pattern.
func Match(pattern, p string) bool {
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return p == base || strings.HasPrefix(p, base+"/")
	}
	return p == pattern
}

func matchAny(patterns []string, p string) bool {
	for _, pat := range patterns {
		if Match(pat, p) {
			return true
		}
	}
	return false
}

// Check returns every violation of rules in pkgs (one per package and
// forbidden dependency it reaches without passing through another, with the
// shortest import chain) and the names of the rules whose From matches no
// package.
func Check(pkgs []Package, rules []Rule) (violations []Violation, unused []string) {
	imports := make(map[string][]string, len(pkgs))
	for _, p := range pkgs {
		imports[p.Path] = p.Imports
	}
	paths := make([]string, 0, len(pkgs))
	for _, p := range pkgs {
		paths = append(paths, p.Path)
	}
	sort.Strings(paths)
	for _, r := range rules {
		applies := false
		for _, from := range paths {
			if !matchAny(r.From, from) {
				continue
			}
			applies = true
			// Breadth first, so each forbidden package is reported with
			// the shortest chain that reaches it.
			prev := map[string]string{from: ""}
			queue := []string{from}
			for len(queue) > 0 {
				cur := queue[0]
				queue = queue[1:]
				deps := append([]string(nil), imports[cur]...)
				sort.Strings(deps)
				for _, d := range deps {
					if _, seen := prev[d]; seen {
						continue
					}
					prev[d] = cur
					if matchAny(r.Forbidden, d) && !matchAny(r.Except, d) {
						var chain []string
						for n := d; n != ""; n = prev[n] {
							chain = append([]string{n}, chain...)
						}
						violations = append(violations, Violation{Rule: r.Name, Chain: chain})
						continue // what it imports in turn is its own business
					}
					queue = append(queue, d)
				}
			}
		}
		if !applies {
			unused = append(unused, r.Name)
		}
	}
	return violations, unused
}
