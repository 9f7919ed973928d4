"""``python -m offload_tuner``: the ``offload-tuner`` command, for environments whose scripts folder is not on PATH."""

import sys

from offload_tuner.inspection._cli import main

if __name__ == "__main__":
    sys.exit(main())
