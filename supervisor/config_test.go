package supervisor

import (
	"strings"
	"testing"
)

// -result-kb and the clients' largest frame are checked against each other
// at start-up, with a message that says what to do.
func TestResultLimitMustFitTheClientsFrame(t *testing.T) {
	base := Config{SocketPath: "/run/s.sock", Venv: "/v", RunnerPath: "/r/runner.py", SandboxUID: 5, SandboxGID: 5, GatewayUID: 6}
	c := base
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	c = base
	c.Defaults = DefaultLimits()
	c.Defaults.ResultBytes = 20 << 20 // over the 16 MiB frames of the Go client (less 4 MiB of images)
	c.Max = c.Defaults
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "-result-kb") || !strings.Contains(err.Error(), "lower -result-kb to 12286 or less") {
		t.Fatalf("20 MiB results with 16 MiB frames: %v", err)
	}
	c.ClientMaxFrame = 32 << 20
	if err := c.Validate(); err != nil {
		t.Fatalf("20 MiB results with 32 MiB frames: %v", err)
	}
	// The output files ride in the same frame as the result and the images:
	// the defaults (8 MiB, 3 MiB of files and their names, 4 MiB of images)
	// fit 16 MiB frames, 4 MiB of files do not.
	c = base
	c.Defaults = DefaultLimits()
	c.Defaults.FilesOutBytes = 4 << 20
	c.Max = c.Defaults
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "-files-out-kb") {
		t.Fatalf("8 MiB results, 4 MiB output files and 4 MiB images with 16 MiB frames: %v", err)
	}
	c = base
	c.ClientMaxFrame = 64 << 10
	if err := c.Validate(); err == nil {
		t.Fatal("8 MiB results with 64 KiB frames accepted")
	}
}
