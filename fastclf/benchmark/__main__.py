"""``python -m fastclf.benchmark --worker JOB --spawned-at T``: the measuring process."""

import sys

from fastclf.benchmark.worker import main

sys.exit(main(sys.argv[1:]))
