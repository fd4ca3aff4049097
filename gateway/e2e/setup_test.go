package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/python-executor/python-executor/internal/supervisortest"
)

// The setup script is idempotent: on a set-up checkout a second run changes
// nothing and says so. The Dockerfile runs it the same way (SETUP_SKIP_GO=1).
func TestSetupIsIdempotent(t *testing.T) {
	supervisortest.RequireRoot(t)
	root := supervisortest.RepoRoot(t)
	cmd := exec.Command(filepath.Join(root, "scripts", "setup.sh"))
	cmd.Env = append(os.Environ(), "SETUP_SKIP_GO=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "setup: up to date") {
		t.Fatalf("setup.sh on a set-up checkout: err=%v output=%s; want \"setup: up to date\"", err, out)
	}
}

// The image is a thin wrapper over the project's own scripts: what CI tests
// is what ships.
func TestDockerfileUsesProjectScripts(t *testing.T) {
	root := supervisortest.RepoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for _, want := range []string{"scripts/setup.sh", `ENTRYPOINT ["scripts/run.sh"]`, "python:3.11", "EXPOSE 8080"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	manifest, err := os.ReadFile(filepath.Join(root, "deploy", "cloudrun.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(manifest), "run.googleapis.com/execution-environment: gen2") {
		t.Error("the Cloud Run manifest does not pin the second-generation environment")
	}
}
