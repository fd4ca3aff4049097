package e2e

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/python-executor/python-executor/internal/supervisortest"
)

// ioReply is the part of an /execute answer that args and files add.
type ioReply struct {
	Files []struct {
		Name      string `json:"name"`
		Size      int    `json:"size"`
		MediaType string `json:"media_type"`
		Content   string `json:"content"`
	} `json:"files"`
	Truncated map[string]bool `json:"truncated"`
}

func ioOf(t *testing.T, r *reply) ioReply {
	t.Helper()
	var io ioReply
	if err := json.Unmarshal(r.Raw, &io); err != nil {
		t.Fatalf("answer %s: %v", r.Raw, err)
	}
	return io
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestArgsAndFiles is issue 12 items 1-3 end to end, on each engine: args
// bound to main()'s parameters (and refused with invalid_args when they
// cannot be), input files written before the script is imported (and bad
// names refused), files left in output/ returned with their caps.
func TestArgsAndFiles(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		st := supervisortest.StartStack(t, engine)
		base := st.Gateway.URL

		t.Run("args", func(t *testing.T) {
			r := execute(t, base, "def main(name, n=1, *, flag=False): return {'name': name, 'n': n, 'flag': flag}",
				map[string]any{"args": map[string]any{"name": "x", "flag": true}})
			if v := r.wantOK(t); mustJSON(v) != `{"flag":true,"n":1,"name":"x"}` {
				t.Fatalf("result %s", mustJSON(v))
			}
			r = execute(t, base, "async def main(**kw): return sorted(kw)", map[string]any{"args": map[string]any{"b": 1, "a-b": []int{1}}})
			if v := r.wantOK(t); mustJSON(v) != `["a-b","b"]` {
				t.Fatalf("result %s", mustJSON(v))
			}
			// Without args, main() is called as before.
			execute(t, base, "def main(): return 1", nil).wantOK(t)
		})

		t.Run("args_refused", func(t *testing.T) {
			for _, tc := range []struct {
				script string
				args   any
				typ    string
				msg    string
			}{
				{"def main(a): return a", map[string]any{"b": 1}, "invalid_args", `main() has no parameter "b"`},
				{"def main(a, *, k): return a", map[string]any{}, "invalid_args", `main() is missing required arguments "a", "k"`},
				{"def main(a, /): return a", map[string]any{"a": 1}, "invalid_args", `positional-only`},
				{"def main(): return 1", map[string]any{"x": 1}, "invalid_args", `main() has no parameter "x"`},
				// A main whose __signature__ lies is judged by its code.
				{"import inspect\ndef main(): return 1\nmain.__signature__ = inspect.Signature([inspect.Parameter('x', inspect.Parameter.KEYWORD_ONLY)])", map[string]any{"x": 1}, "invalid_args", `no parameter "x"`},
				{"def main(): return 1", []int{1}, "invalid_request", `"args" must be a JSON object`},
				{"def main(): return 1", "s", "invalid_request", `"args" must be a JSON object`},
			} {
				r := execute(t, base, tc.script, map[string]any{"args": tc.args})
				r.wantError(t, 400, tc.typ)
				if !strings.Contains(r.Body.Error.Message, tc.msg) {
					t.Errorf("%q: message %q, want it to contain %q", tc.script, r.Body.Error.Message, tc.msg)
				}
			}
			// Over the args cap (lowered per request).
			r := execute(t, base, "def main(**kw): return 1", map[string]any{"args": map[string]any{"a": strings.Repeat("x", 200)}, "args_bytes": 100})
			r.wantError(t, 400, "invalid_request")
			// A TypeError raised inside main is the script's exception.
			execute(t, base, "def main(a): raise TypeError('mine')", map[string]any{"args": map[string]any{"a": 1}}).wantError(t, 500, "exception")
		})

		t.Run("files_in", func(t *testing.T) {
			r := execute(t, base, "import pandas as pd\nwith open('data.csv') as f: HEAD = f.readline()\ndef main():\n    df = pd.read_csv('data.csv')\n    return {'head': HEAD, 'sum': int(df['b'].sum()), 'bin': list(open('d/e/blob.bin', 'rb').read())}",
				map[string]any{"files": []map[string]any{
					{"name": "data.csv", "content": "a,b\n1,2\n3,4\n"},
					{"name": "d/e/blob.bin", "content": base64.StdEncoding.EncodeToString([]byte{0, 255, 7}), "encoding": "base64"},
				}})
			if v := r.wantOK(t); mustJSON(v) != `{"bin":[0,255,7],"head":"a,b\n","sum":6}` {
				t.Fatalf("result %s", mustJSON(v))
			}
		})

		t.Run("files_in_refused", func(t *testing.T) {
			file := func(name string) map[string]any { return map[string]any{"name": name, "content": "x"} }
			for name, files := range map[string]any{
				"traversal":      []any{file("../escape.txt")},
				"deep traversal": []any{file("a/../../etc/passwd")},
				"absolute":       []any{file("/etc/passwd")},
				"dot":            []any{file("a/./b")},
				"empty":          []any{file("")},
				"backslash":      []any{file(`a\b`)},
				"newline":        []any{file("a\nb")},
				"too long":       []any{file(strings.Repeat("a", 256))},
				"too deep":       []any{file(strings.Repeat("a/", 8) + "b")},
				"duplicate":      []any{file("a"), file("a")},
				"file and dir":   []any{file("a"), file("a/b")},
				"bad encoding":   []any{map[string]any{"name": "a", "content": "x", "encoding": "latin-1"}},
				"bad base64":     []any{map[string]any{"name": "a", "content": "!!", "encoding": "base64"}},
				"unknown key":    []any{map[string]any{"name": "a", "content": "x", "mode": 7}},
				"no content":     []any{map[string]any{"name": "a"}},
				"not an array":   map[string]any{"name": "a"},
				"too many":       []any{file("a"), file("b"), file("c")},
			} {
				extra := map[string]any{"files": files}
				if name == "too many" {
					extra["files_count"] = 2
				}
				r := execute(t, base, "def main(): return 1", extra)
				if r.Status != 400 || r.Body.Error == nil || r.Body.Error.Type != "invalid_request" {
					t.Errorf("%s: got %d %s, want 400 invalid_request", name, r.Status, r.Raw)
				}
			}
			// Over the total size cap (lowered per request).
			r := execute(t, base, "def main(): return 1", map[string]any{"files": []any{map[string]any{"name": "a", "content": strings.Repeat("x", 2000)}}, "files_bytes": 1000})
			r.wantError(t, 400, "invalid_request")
			// Files that do not fit the execution's own limits: the request's fault.
			r = execute(t, base, "def main(): return 1", map[string]any{"files": []any{map[string]any{"name": "big", "content": strings.Repeat("x", 2<<20)}}, "file_size_mb": 1})
			r.wantError(t, 400, "invalid_request")
			if !strings.Contains(r.Body.Error.Message, `"big" could not be written`) {
				t.Fatalf("message %q", r.Body.Error.Message)
			}
		})

		t.Run("readme_example", func(t *testing.T) {
			body := "{\n  \"script\": \"import os, pandas as pd\\ndef main(column):\\n    df = pd.read_csv(\\\"data.csv\\\")\\n    os.makedirs(\\\"output\\\", exist_ok=True)\\n    df.to_csv(\\\"output/doubled.csv\\\", index=False, columns=[column])\\n    return int(df[column].sum())\",\n  \"args\": {\"column\": \"b\"},\n  \"files\": [{\"name\": \"data.csv\", \"content\": \"a,b\\n1,2\\n3,4\\n\"}]}"
			r := post(t, base, "/execute", []byte(body))
			r.wantOK(t)
			if !strings.Contains(string(r.Raw), `"truncated":{"stdout":false,"stderr":false,"files":false},"files":[{"name":"doubled.csv","size":6,"media_type":"text/csv","content":"YgoyCjQK"}]}`) || string(r.Body.Result) != "6" {
				t.Fatalf("answer %s", r.Raw)
			}
		})

		t.Run("files_out", func(t *testing.T) {
			r := execute(t, base, "import os\ndef main(n):\n    os.makedirs('output/sub', exist_ok=True)\n    open('output/r.csv', 'w').write('a,b\\n' * n)\n    open('output/sub/x.bin', 'wb').write(bytes(range(3)))\n    return n",
				map[string]any{"args": map[string]any{"n": 2}})
			r.wantOK(t)
			io := ioOf(t, r)
			if len(io.Files) != 2 || io.Truncated["files"] {
				t.Fatalf("files %+v truncated %v", io.Files, io.Truncated)
			}
			f, g := io.Files[0], io.Files[1]
			if f.Name != "r.csv" || f.Size != 8 || f.MediaType != "text/csv" || f.Content != b64("a,b\na,b\n") ||
				g.Name != "sub/x.bin" || g.Size != 3 || g.MediaType != "application/octet-stream" || g.Content != b64("\x00\x01\x02") {
				t.Fatalf("files %+v", io.Files)
			}
			// No output/: the answer is the seed's, without files.
			r = execute(t, base, "def main(): return 1", nil)
			if strings.Contains(string(r.Raw), `"files"`) {
				t.Fatalf("answer without output/ mentions files: %s", r.Raw)
			}
		})
	})
}

// TestIOAdversarial: hostile input through args and files, and a hostile
// output/ directory. Collection must never follow a link, open a special
// file, read a huge or sparse file, or run unbounded; the answer must come
// within the usual time and leak nothing.
func TestIOAdversarial(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		st := supervisortest.StartStack(t, engine)
		base := st.Gateway.URL
		outputCase := func(t *testing.T, body string) (*reply, ioReply) {
			t.Helper()
			start := time.Now()
			r := execute(t, base, "import os\ndef main():\n    os.makedirs('output', exist_ok=True)\n"+body+"\n    return 1\n", nil)
			noCanary(t, r)
			r.wantOK(t)
			if d := time.Since(start); d > slowed(10*time.Second) {
				t.Fatalf("took %v", d)
			}
			return r, ioOf(t, r)
		}
		t.Run("symlinks_not_followed", func(t *testing.T) {
			_, io := outputCase(t, "    os.symlink('/etc/passwd', 'output/passwd')\n    os.symlink('/proc/self/environ', 'output/environ')\n    os.symlink('/', 'output/root')\n    os.symlink('/dev/zero', 'output/zero')\n    open('output/real.txt', 'w').write('ok')")
			if len(io.Files) != 1 || io.Files[0].Name != "real.txt" {
				t.Fatalf("files %+v", io.Files)
			}
		})
		t.Run("output_dir_is_a_symlink", func(t *testing.T) {
			r := execute(t, base, "import os\ndef main():\n    os.symlink('/etc', 'output')\n    return 1\n", nil)
			r.wantOK(t)
			if io := ioOf(t, r); len(io.Files) != 0 {
				t.Fatalf("files %+v", io.Files)
			}
		})
		t.Run("fifo_and_socket_not_read", func(t *testing.T) {
			// A FIFO nobody writes would block a naive reader forever. (The
			// container tier's seccomp filter refuses every socket: there
			// the FIFO is the case.)
			_, io := outputCase(t, "    os.mkfifo('output/fifo')\n    import socket\n    try: socket.socket(socket.AF_UNIX).bind('output/sock')\n    except OSError: pass\n    open('output/a', 'w').write('a')")
			if len(io.Files) != 1 || io.Files[0].Name != "a" {
				t.Fatalf("files %+v", io.Files)
			}
		})
		t.Run("sparse_huge_refused_unread", func(t *testing.T) {
			_, io := outputCase(t, "    f = open('output/sparse', 'wb')\n    f.truncate(60 << 20)\n    f.close()\n    open('output/small', 'w').write('s')")
			if len(io.Files) != 1 || io.Files[0].Name != "small" || !io.Truncated["files"] {
				t.Fatalf("files %+v truncated %v", io.Files, io.Truncated)
			}
		})
		t.Run("file_bomb", func(t *testing.T) {
			_, io := outputCase(t, "    for i in range(3000):\n        open(f'output/f{i:05}', 'w').write('x')")
			if len(io.Files) != 64 || !io.Truncated["files"] || io.Files[0].Name != "f00000" {
				t.Fatalf("%d files, truncated %v", len(io.Files), io.Truncated)
			}
		})
		t.Run("size_cap", func(t *testing.T) {
			r := execute(t, base, "import os\ndef main():\n    os.makedirs('output')\n    for i in range(3):\n        open(f'output/{i}', 'wb').write(b'x' * 1000)\n    return 1\n", map[string]any{"output_files_bytes": 2500})
			r.wantOK(t)
			if io := ioOf(t, r); len(io.Files) != 2 || !io.Truncated["files"] {
				t.Fatalf("files %+v truncated %v", io.Files, io.Truncated)
			}
		})
		t.Run("deep_tree", func(t *testing.T) {
			_, io := outputCase(t, "    p = 'output'\n    for i in range(40):\n        p += '/d'\n        os.mkdir(p)\n        open(p + '/f', 'w').write(str(i))")
			if !io.Truncated["files"] || len(io.Files) == 0 || len(io.Files) > 16 {
				t.Fatalf("%d files, truncated %v", len(io.Files), io.Truncated)
			}
		})
		t.Run("odd_names", func(t *testing.T) {
			_, io := outputCase(t, "    open(b'output/bad\\xff\\nname', 'w').write('x')\n    open('output/ü \"q\".txt', 'w').write('y')")
			if len(io.Files) != 2 || io.Files[0].Name != "bad\\xff\nname" || io.Files[1].Name != "ü \"q\".txt" || io.Files[1].MediaType != "text/plain" {
				t.Fatalf("files %+v", io.Files)
			}
		})
		t.Run("writer_left_running", func(t *testing.T) {
			// A child keeps appending while the runner collects: the file
			// is read at most to the bytes left, never past them.
			r := execute(t, base, "import os, time\ndef main():\n    os.makedirs('output')\n    if os.fork() == 0:\n        f = open('output/grow', 'ab')\n        while True: f.write(b'x' * 65536); f.flush()\n    time.sleep(0.2)\n    return 1\n", map[string]any{"output_files_bytes": 1 << 20})
			noCanary(t, r)
			if r.Status == 200 {
				for _, f := range ioOf(t, r).Files {
					if f.Size > 1<<20 {
						t.Fatalf("file of %d bytes over the cap", f.Size)
					}
				}
			} else if r.Body.Error == nil || (r.Body.Error.Type != "resource_limit" && r.Body.Error.Type != "exception") {
				t.Fatalf("got %d %s", r.Status, r.Raw)
			}
		})
		t.Run("input_file_bomb", func(t *testing.T) {
			files := make([]any, 65)
			for i := range files {
				files[i] = map[string]any{"name": "f" + strings.Repeat("x", i), "content": ""}
			}
			execute(t, base, "def main(): return 1", map[string]any{"files": files}).wantError(t, 400, "invalid_request")
			// Many files that fit the count but not /tmp's inodes.
			few := make([]any, 60)
			for i := range few {
				few[i] = map[string]any{"name": strings.Repeat("d/", 7) + "f" + strings.Repeat("x", i), "content": "x"}
			}
			execute(t, base, "import os\ndef main(): return len(os.listdir('d/d/d/d/d/d/d'))", map[string]any{"files": few}).wantOK(t)
		})
		t.Run("still_serves", func(t *testing.T) {
			waitNoSandboxProcesses(t)
			execute(t, base, "def main(): return 'alive'", nil).wantOK(t)
		})
	})
}
