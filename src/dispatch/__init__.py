"""The dispatch function (the run-job state machine's callback Task)."""
