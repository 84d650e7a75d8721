"""The error names Step Functions matches on (DESIGN-BRIEF.md, "Error names").

Lambda reports an unhandled exception's class name as its `errorType`, and a Retry or Catch
matches that name. Python allows a class named "Job.InvalidRequest" when it is built with
`type()`, so the names the state machine matches are the names these classes carry.
"""

from __future__ import annotations


class JobError(Exception):
    """A job failure with a name Step Functions can match (the class name)."""

    @classmethod
    def error_name(cls) -> str:
        return cls.__name__


def _named(name: str, doc: str) -> type[JobError]:
    return type(name, (JobError,), {"__doc__": doc, "__module__": __name__})


InvalidRequest = _named("Job.InvalidRequest", "The job request failed validation; nothing was sent.")
UnknownType = _named("Job.UnknownType", "The job type has no valid entry in the catalog.")
NoCapacity = _named("Job.NoCapacity", "No online worker instance can take the job now.")
DeliveryFailed = _named("Job.DeliveryFailed", "SSM could not accept the run-container command.")
