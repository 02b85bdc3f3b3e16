"""The seed's way: one fresh `python worker.py FILE OUT` process per file (imports paid every time)."""

import sys

from salvo.extract import extract_plots
from salvo.errors import SkipItem

try:
    extract_plots(input=sys.argv[1], output_dir=sys.argv[2])
except SkipItem:
    pass
