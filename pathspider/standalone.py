"""PATHspider 1.0's path of the standalone runner; it lives in
:mod:`pathspider.engine.coordinator`."""

from pathspider.engine.coordinator import job_feeder, run_standalone

__all__ = ["job_feeder", "run_standalone"]
