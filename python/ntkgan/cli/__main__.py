"""``python -m ntkgan.cli``: the ``ntkgan`` command."""

import sys

from ntkgan.cli import main

sys.exit(main())
