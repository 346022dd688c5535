"""``python -m fastclf.benchmark JOB_FILE SPAWNED_AT``: the measuring process that ``Benchmark.run`` starts."""

import sys

from fastclf.benchmark.worker import Job, run_job

sys.exit(run_job(Job.read(sys.argv[1]), float(sys.argv[2])))
