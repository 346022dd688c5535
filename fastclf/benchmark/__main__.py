"""``python -m fastclf.benchmark JOB_FILE SPAWNED_AT``: the measuring process that ``Benchmark.run`` starts."""

import sys
from pathlib import Path

from fastclf.benchmark.worker import Job, run_job

sys.exit(run_job(Job.model_validate_json(Path(sys.argv[1]).read_bytes()), float(sys.argv[2])))
