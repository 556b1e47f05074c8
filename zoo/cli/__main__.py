"""``python -m zoo.cli``: the ``zoo`` command (what the console script runs), as reproduce's runs and the tests start it."""
import sys

from zoo.cli import main

sys.exit(main())
