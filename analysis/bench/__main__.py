"""``python -m analysis.bench``: see `analysis.bench.cli`."""
import sys

from .cli import main

sys.exit(main())
