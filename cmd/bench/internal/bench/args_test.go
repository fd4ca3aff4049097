package bench

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The args row's script must give the result the row checks for: run it
// with the repository's Python, as main(**args) after writing its file.
func TestArgsScriptResult(t *testing.T) {
	s := argsScript()
	var req struct {
		Script string         `json:"script"`
		Args   map[string]any `json:"args"`
		Files  []struct{ Name, Content string }
	}
	if err := json.Unmarshal(s.body, &req); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/in.csv", []byte(req.Files[0].Content), 0o644); err != nil {
		t.Fatal(err)
	}
	args, _ := json.Marshal(req.Args)
	prog := req.Script + "\nimport json, sys\nprint(json.dumps(main(**json.loads(sys.argv[1]))))\n"
	cmd := exec.Command("python3", "-c", prog, string(args))
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var got any
	json.Unmarshal([]byte(strings.TrimSpace(string(out))), &got)
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(s.want)
	if string(g) != string(w) {
		t.Fatalf("result %s, want %s", g, w)
	}
}
