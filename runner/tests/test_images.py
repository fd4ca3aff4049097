"""Figures left open by main() come back as PNGs (wire/PROTOCOL.md, "Feature images").

Each test runs the real runner.py as a process, with the environment the jail gives
it for matplotlib (MPLBACKEND, MPLCONFIGDIR), and the image caps in the request.
"""

import struct
from pathlib import Path

import pytest
from conftest import spawn_runner

import runner

CAPS = (16, 4 << 20)


def request(script: str, images: tuple[int, int] = CAPS) -> bytes:
    body = {"script": script, "max_result_bytes": 0}
    if images != (0, 0):
        body.update(max_images=images[0], max_image_bytes=images[1])
    return runner.encode_frame(1, runner.MSG_EXECUTE, body)


@pytest.fixture
def run_images(tmp_path: Path):
    def run(script: str, images: tuple[int, int] = CAPS):
        env = {"MPLBACKEND": "Agg", "MPLCONFIGDIR": str(tmp_path / ".matplotlib")}
        return spawn_runner(request(script, images), tmp_path, extra_env=env)

    return run


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


PLOT = """
import matplotlib.pyplot as plt
import pandas as pd

def main():
    df = pd.DataFrame({"x": [1, 2, 3, 4], "y": [1, 4, 9, 16]})
    df.plot(x="x", y="y")
    plt.figure(figsize=(2, 1), dpi=50)
    plt.plot([0, 1])
    return "ok"
"""


def test_open_figures_come_back_as_png(run_images):
    out = run_images(PLOT)
    body = out.body()
    assert body["json"] == b'"ok"'
    assert "images_truncated" not in body
    images = body["images"]
    assert [im["media_type"] for im in images] == ["image/png", "image/png"]
    # Figure-number order, at the figure's own size and dpi.
    assert png_size(images[0]["data"]) == (640, 480)
    assert png_size(images[1]["data"]) == (100, 50)
    # Nothing on stderr: no warning about the config dir or a font cache rebuild.
    assert out.stderr == b""


def test_no_images_unless_asked(run_images):
    body = run_images(PLOT, images=(0, 0)).body()
    assert list(body) == ["json"]


def test_closed_figures_and_no_pyplot_give_nothing(run_images):
    closed = "import matplotlib.pyplot as plt\ndef main():\n    plt.plot([1]); plt.close('all'); return 1\n"
    assert list(run_images(closed).body()) == ["json"]
    assert list(run_images("def main():\n    return 1\n").body()) == ["json"]


def test_count_cap_truncates(run_images):
    script = "import matplotlib.pyplot as plt\ndef main():\n    for i in range(5):\n        plt.figure(figsize=(1, 1), dpi=20)\n"
    body = run_images(script, images=(3, 1 << 20)).body()
    assert len(body["images"]) == 3
    assert body["images_truncated"] is True


def test_byte_cap_truncates(run_images):
    script = "import matplotlib.pyplot as plt\ndef main():\n    for i in range(3):\n        plt.figure(); plt.plot(range(100))\n"
    one = len(run_images(script).body()["images"][0]["data"])
    body = run_images(script, images=(16, one + 10)).body()
    assert len(body["images"]) == 1
    assert body["images_truncated"] is True


def test_huge_figure_is_never_drawn(run_images):
    # 1e5 x 1e5 inches at 100 dpi: drawing it would allocate petabytes; it is
    # refused by its size, and the small one after it still comes back.
    script = (
        "import matplotlib.pyplot as plt\n"
        "def main():\n"
        "    plt.figure(figsize=(1e5, 1e5))\n"
        "    plt.figure(figsize=(1, 1), dpi=10)\n"
        "    return 1\n"
    )
    body = run_images(script).body()
    assert body["images_truncated"] is True
    assert [png_size(im["data"]) for im in body["images"]] == [(10, 10)]


def test_a_figure_that_fails_to_draw_is_the_scripts_exception(run_images):
    script = (
        "import matplotlib.pyplot as plt\n"
        "def bad(x, pos):\n"
        "    raise ValueError('bad tick')\n"
        "def main():\n"
        "    plt.plot([1, 2]); plt.gca().xaxis.set_major_formatter(bad)\n"
        "    return 1\n"
    )
    error = run_images(script).error()
    assert error["type"] == runner.ERR_EXCEPTION
    assert "ValueError: bad tick" in error["message"]


def test_font_cache_of_setup_is_used(tmp_path: Path):
    # scripts/setup.sh builds it into the venv; the runner links it into
    # MPLCONFIGDIR, so matplotlib's first import in a fresh directory reads it.
    built = Path(runner.sys.prefix, "share", "python-executor", "matplotlib")
    names = sorted(p.name for p in built.iterdir())
    assert names and all(n.startswith("fontlist-") for n in names)
    config = tmp_path / ".matplotlib"
    env = {"MPLBACKEND": "Agg", "MPLCONFIGDIR": str(config)}
    script = "import matplotlib.font_manager\ndef main():\n    return 1\n"
    spawn_runner(request(script), tmp_path, extra_env=env).body()
    assert sorted(p.name for p in config.iterdir()) == names
    assert all((config / n).is_symlink() for n in names)
