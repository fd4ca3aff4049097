package e2e

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/python-executor/python-executor/internal/supervisortest"
)

// A script that attacks the runner it runs in (its result channel, what the
// runner uses, the process's state) must get a correct answer or an error
// type that blames the script. `internal` means the service failed; no
// script may cause it.

// writeFrame is a script prelude that writes one forged frame to the
// result channel.
const writeFrame = `
import os, struct, msgpack
def forge(msg_type, body):
    data = msgpack.packb(body, use_bin_type=True)
    frame = struct.pack(">IIBB", len(data), 1, msg_type, 1) + data
    fd = int(os.environ.get("PYEXEC_RESULT_FD", "4"))
    while frame:
        frame = frame[os.write(fd, frame):]
`

// hostileMonkeypatches rebind what a runner might use, at the script's
// module level; main() then returns a value whose answer is exact.
var hostileMonkeypatches = []struct{ name, patch string }{
	{"json_dumps", "import json\njson.dumps = None"},
	{"json_encoder", "import json, json.encoder\njson.JSONEncoder = None\njson.encoder.c_make_encoder = None"},
	{"builtins_len", "import builtins\nbuiltins.len = None"},
	{"builtins_isinstance", "import builtins\nbuiltins.isinstance = None"},
	{"builtins_str", "import builtins\nbuiltins.str = None"},
	{"builtins_repr", "import builtins\nbuiltins.repr = None"},
	{"builtins_type", "import builtins\nbuiltins.type = None"},
	{"builtins_deleted", "import builtins\ndel builtins.len, builtins.isinstance, builtins.getattr"},
	{"stdout_replaced", "import sys\nclass Bad:\n    def write(self, s): raise SystemExit(3)\n    def flush(self): raise SystemExit(3)\nsys.stdout = sys.stderr = sys.__stdout__ = sys.__stderr__ = Bad()"},
	{"msgpack_functions", "import msgpack\nmsgpack.packb = msgpack.unpackb = msgpack.Packer = None"},
	{"os_write", "import os\nos.write = os._exit = os.getpid = os.set_blocking = None"},
	{"struct_pack", "import struct\nstruct.pack = struct.Struct = None"},
	{"sys_modules", "import sys\nsys.modules = {}"},
	{"traceback_module", "import traceback, linecache\ntraceback.TracebackException = None\nlinecache.getlines = None"},
	{"pandas_then_builtins", "import pandas as pd\nframe = pd.DataFrame({'a': [1]})\nimport builtins\nbuiltins.len = builtins.isinstance = builtins.getattr = None"},
}

func TestHostileRunner(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		st := supervisortest.StartStack(t, engine)
		base := st.Gateway.URL

		t.Run("garbage_on_every_fd", func(t *testing.T) {
			r := execute(t, base, "import os\ndef main():\n    for fd in range(3, 64):\n        try:\n            os.write(fd, b'\\xff' * 64)\n        except OSError:\n            pass\n    return 1\n", nil)
			r.wantError(t, 500, "result_corrupted")
		})

		t.Run("forged_internal_error", func(t *testing.T) {
			r := execute(t, base, writeFrame+"def main():\n    forge(0x13, {'type': 'internal', 'message': 'runner failed: forged', 'traceback': ''})\n    return 1\n", nil)
			r.wantError(t, 500, "result_corrupted")
			if !strings.Contains(r.Body.Error.Message, "forged") {
				t.Fatalf("message %q does not carry the runner's words", r.Body.Error.Message)
			}
		})

		t.Run("forged_unknown_frame", func(t *testing.T) {
			r := execute(t, base, writeFrame+"def main():\n    forge(0x02, {'script': 'x'})\n    return 1\n", nil)
			r.wantError(t, 500, "result_corrupted")
		})

		t.Run("forged_huge_error_texts_are_capped", func(t *testing.T) {
			// ~8.5 MiB of control characters, which JSON escapes to six
			// bytes each: uncapped, a 50 MiB answer.
			r := execute(t, base, writeFrame+"def main():\n    forge(0x13, {'type': 'exception', 'message': 'head' + '\\x01' * (4 << 20) + 'tail', 'traceback': 'top' + '\\x02' * (9 << 19) + 'bottom'})\n    return 1\n", nil)
			r.wantError(t, 500, "exception")
			if len(r.Raw) > 1<<20 {
				t.Fatalf("answer of %d bytes", len(r.Raw))
			}
			e := r.Body.Error
			if len([]rune(e.Message)) > 8<<10+64 || len([]rune(e.Traceback)) > 64<<10+64 {
				t.Fatalf("message of %d and traceback of %d characters", len([]rune(e.Message)), len([]rune(e.Traceback)))
			}
			if !strings.HasPrefix(e.Message, "head") || !strings.HasSuffix(e.Message, "tail") || !strings.Contains(e.Message, "characters omitted") || !strings.HasSuffix(e.Traceback, "bottom") {
				t.Fatalf("the cut must keep both ends and say so: %.80q ... %.80q", e.Message, e.Traceback)
			}
		})

		t.Run("monkeypatches", func(t *testing.T) {
			for _, m := range hostileMonkeypatches {
				t.Run(m.name, func(t *testing.T) {
					script := m.patch + "\ndef main():\n    return {'a': [1, 2.5, None, True], 'b': 'text'}\n"
					r := execute(t, base, script, nil)
					if r.Status != 200 || !sameJSON(r.Body.Result, []byte(`{"a": [1, 2.5, null, true], "b": "text"}`)) {
						t.Fatalf("got %d %s", r.Status, r.Raw)
					}
					r = execute(t, base, m.patch+"\ndef main():\n    raise ValueError('nope')\n", nil)
					r.wantError(t, 500, "exception")
					if r.Body.Error.Message != "ValueError: nope" {
						t.Fatalf("message %q", r.Body.Error.Message)
					}
				})
			}
		})

		t.Run("big_integer_is_exact", func(t *testing.T) {
			r := execute(t, base, "def main(): return [10 ** 5000, -(2 ** 20000)]", nil)
			if r.Status != 200 {
				t.Fatalf("got %d %.300s", r.Status, r.Raw)
			}
			var v []json.Number
			if err := json.Unmarshal(r.Body.Result, &v); err != nil || len(v) != 2 {
				t.Fatalf("result %.100s: %v", r.Body.Result, err)
			}
			if string(v[0]) != "1"+strings.Repeat("0", 5000) || !strings.HasPrefix(string(v[1]), "-3980") || len(v[1]) != 6022 {
				t.Fatalf("wrong digits: %.40s... (%d), %.40s... (%d)", v[0], len(v[0]), v[1], len(v[1]))
			}
		})

		t.Run("no_zygote_state", func(t *testing.T) {
			r := execute(t, base, zygoteStateProbe, nil)
			if r.Status != 200 || !sameJSON(r.Body.Result, []byte(`[]`)) {
				t.Fatalf("the script sees its zygote's state: %d %s", r.Status, r.Raw)
			}
		})

		t.Run("no_host_checkout_path", func(t *testing.T) {
			repo := supervisortest.RepoRoot(t)
			r := execute(t, base, hostPathProbe, nil)
			v := r.wantOK(t)
			seen, _ := v.(map[string]any)
			// The full tier binds the checkout at a fixed path; the
			// container tier mounts nothing, and the image's checkout is
			// that path already.
			fixed := mustJSON(seen["mountinfo"])
			if serviceTier(t, base) == "container" {
				fixed = mustJSON(seen["pyvenv.cfg"])
			}
			if len(seen) < 6 || !strings.Contains(fixed, "/opt/python-executor") {
				t.Fatalf("the probe read too little: %.2000s", r.Raw)
			}
			for what, v := range seen {
				text, _ := v.(string)
				if text == "" {
					text = mustJSON(v)
				}
				for _, line := range strings.Split(text, "\n") {
					if strings.Contains(line, repo) {
						t.Errorf("%s shows the checkout path %s: %.500s", what, repo, line)
					}
				}
			}
		})

		t.Run("big_integer_over_the_cap", func(t *testing.T) {
			r := execute(t, base, "def main(): return 2 ** (2 ** 26)", map[string]any{"result_bytes": 1 << 20})
			r.wantError(t, 400, "result_too_large")
		})
	})
}

// zygoteStateProbe returns what it finds of a zygote's state (its module,
// its frames, objects of its classes, sockets): [] when nothing.
const zygoteStateProbe = `
import __main__, gc, socket, sys
ZYGOTE_NAMES = {"_executions", "ChildSetup", "Mount", "Order", "setup", "WARMUP", "_serve", "_execution", "control", "lockdown", "order", "init", "_job"}
def main():
    found = []
    names = sorted(n for n in vars(__main__) if not (n.startswith("__") and n.endswith("__")))
    if names:
        found.append("__main__ has " + ",".join(names[:20]))
    frame = sys._getframe()
    while frame is not None:
        for name in ZYGOTE_NAMES & (set(frame.f_globals) | set(frame.f_locals)):
            found.append(f"frame {frame.f_code.co_name} has {name}")
        frame = frame.f_back
    for obj in gc.get_objects():
        kind = type(obj)
        if isinstance(obj, socket.socket):
            found.append(f"a socket, fd {obj.fileno()}")
        elif getattr(kind, "__module__", "") == "__main__" and kind.__name__ in ZYGOTE_NAMES:
            found.append("an object of class " + kind.__name__)
    found += ["module " + name for name in sys.modules if "zygote" in name]
    return found
`

// hostPathProbe returns everything a script can easily read that could name
// where the service is installed.
const hostPathProbe = `
import os, sys
def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError as e:
        return "unreadable: " + e.strerror
def main():
    return {
        "pyvenv.cfg": read(os.path.join(sys.prefix, "pyvenv.cfg")),
        "mountinfo": read("/proc/self/mountinfo"),
        "mounts": read("/proc/self/mounts"),
        "sys.path": sys.path,
        "environ": dict(os.environ),
        "prefix": [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.executable],
        "cwd": os.getcwd(),
    }
`
