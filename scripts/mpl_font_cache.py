"""Build matplotlib's font cache for the jails: python mpl_font_cache.py DIR.

Writes DIR/fontlist-v<version>.json the way matplotlib itself writes it at its first
import, keeping only the fonts matplotlib ships (stored relative to its data path,
so the venv's path inside the jail does not matter): the jails see the venv but no
system font directory, and an entry for a file the jail cannot see would make
matplotlib rebuild the list. The runner links the file into each execution's
MPLCONFIGDIR (runner.prepare_matplotlib). Used by scripts/setup.sh and by the cgroup
v2 guest's image (scripts/v2/build-image.sh). Run it with MPLCONFIGDIR set to a
scratch directory, so matplotlib's own first-import cache does not land in a home.
"""

import os
import sys

import matplotlib
from matplotlib import font_manager as fm


def main() -> None:
    out_dir = sys.argv[1]
    data = os.path.realpath(matplotlib.get_data_path()) + os.sep
    m = fm.FontManager()
    m.ttflist = [f for f in m.ttflist if os.path.realpath(f.fname).startswith(data)]
    m.afmlist = [f for f in m.afmlist if os.path.realpath(f.fname).startswith(data)]
    if not m.ttflist:
        sys.exit("no font of matplotlib's own found under " + data)
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, f"fontlist-v{fm.FontManager.__version__}.json")
    fm.json_dump(m, out)  # logs and carries on when it cannot write: checked below
    if not os.path.isfile(out):
        sys.exit("could not write " + out)
    os.chmod(out_dir, 0o755)
    os.chmod(out, 0o644)


if __name__ == "__main__":
    main()
