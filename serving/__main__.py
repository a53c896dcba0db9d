"""`python -m serving`: run the gateway under gunicorn with serving/gunicorn_conf.py (extra args go to gunicorn)."""

import os
import sys
from pathlib import Path

config = Path(__file__).with_name("gunicorn_conf.py")
os.execvp(sys.executable, [sys.executable, "-m", "gunicorn", "-c", str(config), *sys.argv[1:]])
