"""``python -m gateway.bench``: the load tool, as ``cmpp-gateway bench``."""

import sys

from .load import main

sys.exit(main())
