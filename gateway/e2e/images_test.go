package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"strings"
	"testing"
	"time"

	"github.com/python-executor/python-executor/internal/supervisortest"
)

// imageReply is the optional part of an /execute answer that carries figures.
type imageReply struct {
	Images []struct {
		MediaType string `json:"media_type"`
		Data      string `json:"data"`
	} `json:"images"`
	Truncated map[string]bool `json:"truncated"`
}

func decodeImages(t *testing.T, r *reply) (imgs [][]byte, truncated bool) {
	t.Helper()
	var ir imageReply
	if err := json.Unmarshal(r.Raw, &ir); err != nil {
		t.Fatal(err)
	}
	for i, im := range ir.Images {
		if im.MediaType != "image/png" {
			t.Fatalf("image %d has media type %q", i, im.MediaType)
		}
		b, err := base64.StdEncoding.DecodeString(im.Data)
		if err != nil {
			t.Fatalf("image %d: %v", i, err)
		}
		imgs = append(imgs, b)
	}
	return imgs, ir.Truncated["images"]
}

// pngSize decodes a PNG fully (it must be a valid one) and returns its size.
func pngSize(t *testing.T, b []byte) (int, int) {
	t.Helper()
	im, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	return im.Bounds().Dx(), im.Bounds().Dy()
}

// The README's plotting example.
const dfPlotScript = `
import pandas as pd

def main():
    df = pd.DataFrame({"month": ["Jan", "Feb", "Mar", "Apr", "May", "Jun"],
                       "sales": [120, 135, 160, 150, 180, 210],
                       "costs": [100, 110, 115, 130, 125, 140]})
    ax = df.plot(x="month", y=["sales", "costs"], marker="o", title="Sales and costs")
    ax.set_ylabel("k$")
    return {"total_sales": int(df["sales"].sum())}
`

// TestImages: figures open when main() returns come back as PNGs, with no
// set-up in the script, on both engines; caps hold against plot bombs.
func TestImages(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		st := supervisortest.StartStack(t, engine)
		base := st.Gateway.URL

		t.Run("df_plot", func(t *testing.T) {
			start := time.Now()
			r := execute(t, base, dfPlotScript, nil)
			elapsed := time.Since(start)
			r.wantOK(t)
			if !sameJSON(r.Body.Result, []byte(`{"total_sales":955}`)) {
				t.Fatalf("result %s", r.Body.Result)
			}
			// No warning about matplotlib's directories or its font cache.
			if r.Body.Stderr != "" {
				t.Fatalf("stderr %q", r.Body.Stderr)
			}
			imgs, truncated := decodeImages(t, r)
			if len(imgs) != 1 || truncated {
				t.Fatalf("%d images, truncated %v: %.300s", len(imgs), truncated, r.Raw)
			}
			if w, h := pngSize(t, imgs[0]); w != 640 || h != 480 {
				t.Fatalf("image is %dx%d, want matplotlib's default 640x480", w, h)
			}
			t.Logf("%s: df.plot() answered in %v", engine, elapsed)
		})

		t.Run("hidden_import_on_slim", func(t *testing.T) {
			// The text names no preloaded module, so the warm engine runs
			// it on a slim zygote (nothing preloaded), which must still
			// return its figure, with no warning, as the cold engine does.
			const script = "import importlib, sys\ndef main():\n    name = 'mat' + 'plotlib'\n    before = name in sys.modules\n    plt = importlib.import_module(name + '.pyplot')\n    plt.plot([1, 3, 2])\n    return before\n"
			r := execute(t, base, script, nil)
			v := r.wantOK(t)
			if engine == "warm" && !supervisortest.SlimZygotesOff() && v != false {
				t.Errorf("matplotlib was loaded before the script imported it: not a slim child")
			}
			imgs, truncated := decodeImages(t, r)
			if len(imgs) != 1 || truncated || r.Body.Stderr != "" {
				t.Fatalf("%d images, truncated %v, stderr %q: %.300s", len(imgs), truncated, r.Body.Stderr, r.Raw)
			}
			pngSize(t, imgs[0])
		})

		t.Run("no_figure_no_key", func(t *testing.T) {
			for _, script := range []string{
				"def main(): return 1",
				"import matplotlib.pyplot as plt\ndef main():\n    plt.plot([1, 2])\n    plt.close()\n    return 1\n",
			} {
				r := execute(t, base, script, nil)
				r.wantOK(t)
				if bytes.Contains(r.Raw, []byte(`"images"`)) {
					t.Fatalf("answer has images: %s", r.Raw)
				}
			}
		})

		t.Run("savefig_and_show_need_no_setup", func(t *testing.T) {
			// show() is a no-op under Agg; savefig writes where the
			// script may write; the config dir is writable.
			r := execute(t, base, "import matplotlib\nimport matplotlib.pyplot as plt\ndef main():\n    plt.plot([3, 1, 2])\n    plt.show()\n    plt.savefig('out.png')\n    import os\n    return [matplotlib.get_backend(), os.path.getsize('out.png') > 1000, os.access(matplotlib.get_configdir(), os.W_OK)]\n", nil)
			if v := r.wantOK(t); mustJSON(v) != `["agg",true,true]` && mustJSON(v) != `["Agg",true,true]` {
				t.Fatalf("result %s, stderr %q", mustJSON(v), r.Body.Stderr)
			}
			if imgs, _ := decodeImages(t, r); len(imgs) != 1 || r.Body.Stderr != "" {
				t.Fatalf("%d images, stderr %q", len(imgs), r.Body.Stderr)
			}
		})

		t.Run("config_dir_fresh_outside_tmp", func(t *testing.T) {
			// matplotlib's directory holds the font cache's link, is
			// writable, and starts fresh: a file an execution leaves there
			// is not seen by the next. In the full tier it is outside /tmp,
			// which stays empty (the fresh-/tmp isolation tests rely on it).
			const script = `
import os, matplotlib.font_manager, matplotlib
def main():
    d = matplotlib.get_configdir()
    seen = os.path.exists(os.path.join(d, "left-behind"))
    open(os.path.join(d, "left-behind"), "w").write("x")
    fonts = any(n.startswith("fontlist-") for n in os.listdir(d))
    return {"dir": d, "cache": matplotlib.get_cachedir(), "seen": seen, "fonts": fonts, "tmp": os.listdir("/tmp")}
`
			container := serviceTier(t, base) == "container"
			for i := range 2 {
				r := execute(t, base, script, nil)
				v, _ := r.wantOK(t).(map[string]any)
				if r.Body.Stderr != "" || v["seen"] != false || v["fonts"] != true || v["dir"] != v["cache"] {
					t.Fatalf("execution %d: %s, stderr %q", i, r.Body.Result, r.Body.Stderr)
				}
				if container {
					continue
				}
				if v["dir"] != "/opt/python-executor/matplotlib" || mustJSON(v["tmp"]) != `[]` {
					t.Fatalf("execution %d: %s, want the config dir outside an empty /tmp", i, r.Body.Result)
				}
			}
		})

		t.Run("error_has_no_images", func(t *testing.T) {
			r := execute(t, base, "import matplotlib.pyplot as plt\ndef main():\n    plt.plot([1])\n    raise ValueError('after plotting')\n", nil)
			r.wantError(t, 500, "exception")
			if bytes.Contains(r.Raw, []byte(`"images"`)) {
				t.Fatalf("error answer has images: %.300s", r.Raw)
			}
		})

		t.Run("drawing_fails_is_the_scripts", func(t *testing.T) {
			r := execute(t, base, "import matplotlib.pyplot as plt\ndef bad(x, pos):\n    raise ValueError('bad tick')\ndef main():\n    plt.plot([1, 2])\n    plt.gca().xaxis.set_major_formatter(bad)\n    return 1\n", nil)
			r.wantError(t, 500, "exception")
			if !strings.Contains(r.Body.Error.Message, "bad tick") {
				t.Fatalf("message %q", r.Body.Error.Message)
			}
		})

		for _, bomb := range plotBombs {
			t.Run("plot_bomb_"+bomb.name, func(t *testing.T) {
				r := execute(t, base, bomb.script, nil)
				r.wantOK(t)
				imgs, truncated := decodeImages(t, r)
				if !truncated || len(imgs) != bomb.images {
					t.Fatalf("%d images, truncated %v; want %d, truncated", len(imgs), truncated, bomb.images)
				}
				total := 0
				for _, b := range imgs {
					pngSize(t, b)
					total += len(b)
				}
				if total > 4<<20 {
					t.Fatalf("%d bytes of images, over the 4 MiB cap", total)
				}
			})
		}
		t.Run("alive_after", func(t *testing.T) {
			waitNoSandboxProcesses(t)
			r := execute(t, base, "def main(): return 'alive'", nil)
			if !sameJSON(r.Body.Result, []byte(`"alive"`)) {
				t.Fatalf("service no longer answers: %d %s", r.Status, r.Raw)
			}
		})
	})
}

// plotBombs: figures the caps must cut. Each answers 200 with the images
// that fit and truncated.images.
var plotBombs = []struct {
	name, script string
	images       int // how many come back
}{
	// More figures than the count cap (16).
	{"many_figures", "import matplotlib.pyplot as plt\ndef main():\n    for i in range(200):\n        plt.figure(figsize=(1, 1), dpi=10)\n    return 1\n", 16},
	// A raster of 10^12 pixels: refused by its size, never drawn (drawing
	// it would allocate terabytes), the small one after it kept.
	{"huge_figure", "import matplotlib.pyplot as plt\ndef main():\n    plt.figure(figsize=(1e5, 1e5))\n    plt.figure(figsize=(1, 1), dpi=10)\n    return 1\n", 1},
	// Noise does not compress: 1 MiB-ish PNGs until the 4 MiB byte cap.
	{"incompressible", "import matplotlib.pyplot as plt\nimport numpy as np\ndef main():\n    rng = np.random.default_rng(1)\n    for i in range(8):\n        fig = plt.figure(figsize=(6, 6), dpi=100)\n        fig.figimage(rng.integers(0, 255, (600, 600, 3), dtype=np.uint8))\n    return 1\n", 3},
}
