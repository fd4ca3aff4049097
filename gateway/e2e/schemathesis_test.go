package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/python-executor/python-executor/internal/supervisortest"
)

// Schemathesis bounds: examples per operation and seconds per engine, so the
// run fits CI on a 2-core machine. PYEXEC_FUZZ_EXAMPLES and
// PYEXEC_FUZZ_SECONDS raise them for a longer local run.
const (
	fuzzExamples = 40
	fuzzSeconds  = 45
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// Schemathesis (pinned in requirements-dev.txt, installed into the venv by
// scripts/setup.sh) fuzzes the live service from the document it serves at
// /openapi.json: every status must be documented, every content type and
// body must match the document, the documented headers must be there, and
// no 5xx may be anything but a documented script, load or lifecycle answer
// (never internal; testdata/schemathesis_hooks.py).
func TestSchemathesis(t *testing.T) {
	root := supervisortest.RepoRoot(t)
	bin := filepath.Join(root, ".venv", "bin", "schemathesis")
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("schemathesis is missing (%v); scripts/setup.sh installs it from requirements-dev.txt", err)
		}
		t.Skipf("schemathesis is missing (%v): NOT RUN; scripts/setup.sh installs it", err)
	}
	hooks := filepath.Join(root, "gateway", "e2e", "testdata", "schemathesis_hooks.py")
	examples := envInt("PYEXEC_FUZZ_EXAMPLES", fuzzExamples)
	seconds := envInt("PYEXEC_FUZZ_SECONDS", fuzzSeconds)
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		st := supervisortest.StartStack(t, engine)
		base := st.Gateway.URL
		// The run's own budget plus start-up and the last requests (each
		// bounded by --request-timeout).
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds+90)*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "--no-color", "run", base+"/openapi.json",
			"--url", base,
			"--checks", "status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,no_service_failure,scripts_ran",
			"--phases", "examples,coverage,fuzzing",
			"--max-examples", strconv.Itoa(examples),
			"--max-time", strconv.Itoa(seconds),
			"--workers", "2",
			"--request-timeout", "45",
			"--seed", "1",
		)
		// Hypothesis keeps its example database in the working directory.
		cmd.Dir = t.TempDir()
		cmd.Env = append(os.Environ(), "SCHEMATHESIS_HOOKS="+hooks)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		t.Logf("schemathesis (%s engine, %d examples per operation, %ds budget) took %v", engine, examples, seconds, time.Since(start).Round(time.Second))
		if err != nil {
			t.Fatalf("schemathesis: %v\n%s", err, out)
		}
		t.Logf("%s", out)
	})
}
