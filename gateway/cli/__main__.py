"""``python -m gateway.cli``: the same as ``cmpp-gateway``."""

import sys

from .commands import main

sys.exit(main())
