"""Load: many members using the real bot at once, through the fake Discord (support/load_scenario.py).

    .venv/bin/python bench/load.py [--members 50] [--commands 200] [--clicks 1000] [--window 60] [--burst 300]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/load.py` from anywhere
    sys.path.insert(0, str(ROOT))

from support.load_scenario import main  # noqa: E402

if __name__ == "__main__":
    main()
