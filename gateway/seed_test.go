package gateway

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/python-executor/python-executor/client"
	"github.com/python-executor/python-executor/wire"
)

// The README's curl examples, copied verbatim into testdata/seed/*.sh. Each
// case names the script the gateway must hand the supervisor and the result
// the fake supervisor answers with (as the runner would encode it).
var seedExamples = []struct {
	file   string
	script string
	result string
}{
	{
		file:   "hello_world.sh",
		script: `def main(): return {"message": "Hello World", "result": 42}`,
		result: `{"message": "Hello World", "result": 42}`,
	},
	{
		file:   "cloud_run.sh",
		script: `def main(): return {"message": "Hello from Cloud Run!", "calculation": 2 + 2}`,
		result: `{"message": "Hello from Cloud Run!", "calculation": 4}`,
	},
	{
		file:   "basic.sh",
		script: `def main(): return {"greeting": "Hello World"}`,
		result: `{"greeting": "Hello World"}`,
	},
	{
		file: "pandas.sh",
		script: "\nimport pandas as pd\nimport numpy as np\n\ndef main():\n" +
			"    df = pd.DataFrame({\"A\": [1, 2, 3], \"B\": [4, 5, 6]})\n" +
			"    return {\n" +
			"        \"shape\": df.shape,\n" +
			"        \"sum\": df.sum().to_dict(),\n" +
			"        \"mean\": df.mean().to_dict()\n" +
			"    }\n",
		result: `{"shape": [3, 2], "sum": {"A": 6, "B": 15}, "mean": {"A": 2.0, "B": 5.0}}`,
	},
	{
		file: "numpy.sh",
		script: "\nimport numpy as np\n\ndef main():\n" +
			"    arr = np.array([1, 2, 3, 4, 5])\n" +
			"    return {\n" +
			"        \"array\": arr.tolist(),\n" +
			"        \"sum\": float(np.sum(arr)),\n" +
			"        \"mean\": float(np.mean(arr)),\n" +
			"        \"std\": float(np.std(arr))\n" +
			"    }\n",
		result: `{"array": [1, 2, 3, 4, 5], "sum": 15.0, "mean": 3.0, "std": 1.4142135623730951}`,
	},
	{
		file:   "test_success.sh",
		script: `def main(): return {"test": "success"}`,
		result: `{"test": "success"}`,
	},
}

// seedFake answers each seed script with its canned result and the stats
// below.
func seedFake() *fakeExec {
	return &fakeExec{execute: func(_ context.Context, req wire.Execute) (*client.Outcome, error) {
		for _, ex := range seedExamples {
			if req.Script == ex.script {
				return &client.Outcome{
					Result: []byte(ex.result),
					Done:   wire.Done{WallMS: 31, CPUMS: 20, PeakMemoryBytes: 12 << 20, ExitReason: wire.ExitOK},
				}, nil
			}
		}
		return &client.Outcome{Err: &wire.Error{Type: wire.ErrMissingMain, Message: "not a seed script"}}, nil
	}}
}

func seedWant(result string) string {
	return `{"result":` + result + `,"stdout":"","stderr":"",` +
		`"stats":{"wall_ms":31,"cpu_ms":20,"peak_memory_bytes":12582912},` +
		`"truncated":{"stdout":false,"stderr":false}}`
}

func readSeed(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "seed", file))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// seedBody extracts the -d '...' argument of a curl command.
func seedBody(t *testing.T, cmd string) string {
	t.Helper()
	i := strings.Index(cmd, "-d '")
	if i < 0 {
		t.Fatal("no -d '...' in the command")
	}
	rest := cmd[i+len("-d '"):]
	j := strings.IndexByte(rest, '\'')
	if j < 0 {
		t.Fatal("unterminated -d '...'")
	}
	return rest[:j]
}

// TestSeedExamples posts the README's request bodies byte for byte.
func TestSeedExamples(t *testing.T) {
	f := seedFake()
	ts := start(t, f)
	for _, ex := range seedExamples {
		t.Run(ex.file, func(t *testing.T) {
			body := seedBody(t, readSeed(t, ex.file))
			r := postJSON(t, ts, body)
			checkJSON(t, r)
			if want := seedWant(ex.result); r.status != 200 || r.body != want {
				t.Errorf("got %d %s\nwant 200 %s", r.status, r.body, want)
			}
			if got := f.lastReq(t).Script; got != ex.script {
				t.Errorf("script = %q\nwant     %q", got, ex.script)
			}
		})
	}
}

// TestSeedCurl runs the README's curl commands themselves, with only the URL
// pointed at the test server.
func TestSeedCurl(t *testing.T) {
	requireCurl(t)
	ts := start(t, seedFake())
	run := func(t *testing.T, file string) string {
		t.Helper()
		cmd := readSeed(t, file)
		cmd = strings.ReplaceAll(cmd, "http://localhost:8080", ts.url)
		cmd = strings.ReplaceAll(cmd, "https://YOUR_CLOUD_RUN_URL", ts.url)
		out, err := exec.Command("sh", "-c", cmd).Output()
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		return string(out)
	}
	for _, ex := range seedExamples {
		t.Run(ex.file, func(t *testing.T) {
			if got, want := run(t, ex.file), seedWant(ex.result); got != want {
				t.Errorf("curl printed %s\nwant         %s", got, want)
			}
		})
	}
	t.Run("health.sh", func(t *testing.T) {
		want := `{"status":"healthy","supervisor":"reachable","engine":"warm","isolation":"full","cgroups":"v2"}`
		if got := run(t, "health.sh"); got != want {
			t.Errorf("curl printed %s\nwant         %s", got, want)
		}
	})
}

// requireCurl fails under CI (scripts/test.sh installs curl) and skips
// elsewhere when curl is missing: nothing skips in CI.
func requireCurl(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("curl"); err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("curl is not installed, and CI is set: make test installs it")
	}
	t.Skip("curl is not installed (make test installs it)")
}
