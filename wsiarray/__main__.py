"""``python -m wsiarray``: the command line."""

import sys

from wsiarray.cli import main

sys.exit(main())
