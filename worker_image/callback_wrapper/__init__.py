"""Callback wrapper: runs a job in a worker container for a Step Functions task that waits
for a task token, heartbeats while it runs and sends exactly one SendTaskSuccess or
SendTaskFailure when it ends. See worker_image/README.md."""
