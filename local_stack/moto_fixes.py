"""What moto 5.2.5 lacks to stand in for SSM Run Command and Step Functions callbacks.

moto records SSM commands but never checks or runs them (and sends an untargeted command
to every instance), and lacks DescribeInstanceInformation, ListCommandInvocations and
CancelCommand; its SendTaskFailure drops the cause; its StopExecution leaves a callback Task
waiting; its Retry attempts reuse the first attempt's task token; its `states:startExecution`
integration passes AWS's parameter names to boto3 unchanged and returns boto3's; its DynamoDB
evaluates a write's condition and applies the write without a lock, so two concurrent
conditional writes can both pass (DynamoDB applies each atomically); its ListExecutions page
token names the next page's first execution and is refused once that one has left the status
filter (AWS's tokens survive executions ending between pages). These patches add AWS's
behaviour as AWS documents it, and hand accepted commands to the local agent
(local_stack/agent.py) when one is registered. `apply()` is idempotent; the unit tests and
the local stack call it before using moto.
"""

from __future__ import annotations

import base64
import binascii
import functools
import inspect
import re
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import yaml
from moto.core.responses import ActionResult, EmptyResult
from moto.dynamodb.models import DynamoDBBackend
from moto.ec2.models import ec2_backends
from moto.ssm.exceptions import SSMException
from moto.ssm.models import Command, SimpleSystemManagerBackend
from moto.ssm.responses import SimpleSystemManagerResponse
from moto.stepfunctions.exceptions import InvalidToken
from moto.stepfunctions.models import Execution as ExecutionRecord
from moto.stepfunctions.models import StepFunctionBackend
from moto.stepfunctions.parser.api import ExecutionStatus
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
    StateTaskServiceCallback,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn import (
    StateTaskServiceSfn,
)
from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication, Execution
from moto.stepfunctions.responses import StepFunctionResponse

# The local agent registers here; without one (unit tests), commands stay Pending.
command_sink: Callable[[Command], None] | None = None
# Instances whose agent stopped answering: SSM reports them ConnectionLost.
lost_instances: set[str] = set()
_applied = False


def _error(code: str, message: str) -> SSMException:
    return SSMException(code, message)


def instance_tags(account_id: str, region: str, instance_id: str) -> dict[str, str]:
    return _running_instances(account_id, region).get(instance_id, {})


def _running_instances(account_id: str, region: str) -> dict[str, dict[str, str]]:
    """Running EC2 instances (moto) and their tags: what SSM would have registered."""
    backend = ec2_backends[account_id][region]
    found = {}
    for reservation in backend.all_reservations():
        for instance in reservation.instances:
            if instance.state == "running":
                found[instance.id] = {
                    tag["key"]: tag["value"] for tag in backend.describe_tags(filters={"resource-id": [instance.id]})
                }
    return found


def describe_instance_information(
    self: SimpleSystemManagerBackend, filters: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    result = []
    for instance_id, tags in _running_instances(self.account_id, self.region_name).items():
        info = {
            "InstanceId": instance_id,
            "PingStatus": "ConnectionLost" if instance_id in lost_instances else "Online",
            "PlatformType": "Linux",
            "PlatformName": "Amazon Linux",
            "AgentVersion": "3.3.0.0",
            "ResourceType": "EC2Instance",
        }
        if all(_matches(info, tags, spec) for spec in filters):
            result.append(info)
    return result


def _matches(info: dict[str, Any], tags: dict[str, str], spec: dict[str, Any]) -> bool:
    key, values = spec["Key"], spec["Values"]
    if key.startswith("tag:"):
        return tags.get(key[4:]) in values
    if key == "tag-key":
        return any(value in tags for value in values)
    return str(info.get(key)) in values


def check_parameters(document: dict[str, Any], given: dict[str, list[str]]) -> dict[str, str]:
    """SSM's checks of a command's parameters against its document: known names, required
    values, allowedValues and allowedPattern (a full match). Returns the values to run with."""
    declared: dict[str, Any] = document.get("parameters", {})
    for name in given:
        if name not in declared:
            raise _error("InvalidParameters", f"Parameter {name!r} is not defined in the document.")
    values = {}
    for name, spec in declared.items():
        if name in given:
            if len(given[name]) != 1:
                raise _error("InvalidParameters", f"Parameter {name!r} must have exactly one value.")
            value = given[name][0]
        elif "default" in spec:
            value = str(spec["default"])
        else:
            raise _error("InvalidParameters", f"Parameter {name!r} is required.")
        if "allowedValues" in spec and value not in spec["allowedValues"]:
            raise _error("InvalidParameters", f"Parameter {name!r} is not one of its allowed values.")
        if "allowedPattern" in spec and not re.fullmatch(spec["allowedPattern"], value):
            raise _error("InvalidParameters", f"Parameter {name!r} does not match its allowedPattern.")
        values[name] = value
    return values


_original_send_command = SimpleSystemManagerBackend.send_command


def send_command(self: SimpleSystemManagerBackend, **kwargs: Any) -> Command:
    name = kwargs.get("document_name") or ""
    documents = self._documents.get(name)
    if documents is None:
        raise _error("InvalidDocument", f"Document {name} does not exist.")
    document = yaml.safe_load(documents.get_latest_version().content)
    values = check_parameters(document, kwargs.get("parameters") or {})
    known = _running_instances(self.account_id, self.region_name)
    for instance_id in kwargs.get("instance_ids") or []:
        if instance_id not in known:
            raise _error("InvalidInstanceId", f"Instance {instance_id} is not a running managed instance.")
    command = _original_send_command(self, **kwargs)
    command.document = document  # type: ignore[attr-defined]
    command.resolved_parameters = values  # type: ignore[attr-defined]
    command.status = "Pending"
    command.status_details = "Pending"
    command.completed_count = 0
    for invocation in command.invocations:
        invocation.update(Status="Pending", StatusDetails="Pending", ResponseCode=-1)
        invocation.update(ExecutionStartDateTime="", ExecutionEndDateTime="", ExecutionElapsedTime="")
    if command_sink is not None:
        command_sink(command)
    return command


def _instance_ids_from_targets(self: Command) -> list[str]:
    # moto resolves an empty Targets list to every instance in the region.
    return _original_targets(self) if self.targets else []


_original_targets = Command._get_instance_ids_from_targets


def cancel_command(self: SimpleSystemManagerBackend, command_id: str, instance_ids: list[str]) -> None:
    command = self.get_command_by_id(command_id)
    cancel = getattr(command, "cancel", None)
    if cancel is not None:
        cancel(instance_ids or command.instance_ids)


def _list_command_invocations(self: SimpleSystemManagerResponse) -> ActionResult:
    command_id = self._get_param("CommandId")
    instance_id = self._get_param("InstanceId")
    commands = self.ssm_backend.list_commands(command_id, instance_id)
    invocations = [
        dict(invocation)
        for command in commands
        for invocation in command.invocations
        if instance_id in (None, invocation["InstanceId"])
    ]
    return ActionResult({"CommandInvocations": invocations})


def _describe_instance_information(self: SimpleSystemManagerResponse) -> ActionResult:
    filters = self._get_param("Filters") or []
    filters += [
        {"Key": f["key"], "Values": f["valueSet"]} for f in self._get_param("InstanceInformationFilterList") or []
    ]
    found = describe_instance_information(self.ssm_backend, filters)
    return ActionResult({"InstanceInformationList": found})


def _cancel_command(self: SimpleSystemManagerResponse) -> ActionResult:
    cancel_command(self.ssm_backend, self._get_param("CommandId"), self._get_param("InstanceIds") or [])
    return EmptyResult()


def _send_task_failure(self: StepFunctionResponse) -> ActionResult:
    # moto's response drops `cause`; its executing backend accepts it (the plain one, used when
    # executions do not run, takes none).
    backend = self.stepfunction_backend
    details = {"error": self._get_param("error"), "cause": self._get_param("cause")}
    if "cause" not in inspect.signature(backend.send_task_failure).parameters:
        del details["cause"]
    backend.send_task_failure(self._get_param("taskToken"), **details)
    return EmptyResult()


_original_stop = Execution.stop
_original_reflect = BaseExecutionWorkerCommunication._reflect_execution_status


def _stop_execution(self: Execution, stop_date: Any, error: str | None, cause: str | None) -> None:
    # moto's engine keeps a callback Task waiting after StopExecution (the execution stays
    # RUNNING until the heartbeat expires, then FAILS); AWS aborts at once.
    self.stopped_on_request = True  # type: ignore[attr-defined]
    _original_stop(self, stop_date=stop_date, error=error, cause=cause)
    environment = self.exec_worker.env if self.exec_worker is not None else None
    if environment is not None:
        for endpoint in list(environment.callback_pool_manager._pool.values()):
            endpoint.interrupt_all()


def _reflect_execution_status(self: BaseExecutionWorkerCommunication) -> None:
    _original_reflect(self)  # type: ignore[no-untyped-call]
    if getattr(self.execution, "stopped_on_request", False):
        self.execution.exec_status = ExecutionStatus.ABORTED
        self.execution.error = self.execution.cause = None


_original_callback_execution = StateTaskServiceCallback._eval_execution


def _callback_execution(self: StateTaskServiceCallback, env: Any) -> None:
    # moto hands a Retry attempt the previous attempt's token, whose outcome is already set, so
    # the attempt fails at once with the old error; AWS gives each attempt a new token.
    state = env.states.context_object.context_object_data.get("State", {})
    if state.get("RetryCount", 0) > 0 and "Task" in env.states.context_object.context_object_data:
        env.callback_pool_manager.add(env.states.context_object.update_task_token())
    _original_callback_execution(self, env)


_original_sfn_parameters = StateTaskServiceSfn._normalise_parameters
# Members whose values are the caller's own JSON: their keys are data, not API member names.
_SFN_DATA_MEMBERS = ("input", "output")


def _sfn_parameters(self: StateTaskServiceSfn, parameters: dict[str, Any], *args: Any, **kwargs: Any) -> None:
    # The integration takes the API's member names (StateMachineArn, Input, Name); boto3 wants
    # its own (stateMachineArn, input, name). moto left this conversion out of its port.
    _original_sfn_parameters(self, parameters, *args, **kwargs)
    for key in list(parameters):
        parameters[key[:1].lower() + key[1:]] = parameters.pop(key)


def _api_shape(value: Any) -> Any:
    """A boto3 response as Step Functions shows it to the state: member names capitalised,
    timestamps as epoch milliseconds."""
    if isinstance(value, dict):
        return {
            key[:1].upper() + key[1:]: item if key in _SFN_DATA_MEMBERS else _api_shape(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_api_shape(item) for item in value]
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return value


def _sfn_response(self: StateTaskServiceSfn, response: Any, *args: Any, **kwargs: Any) -> None:
    # startExecution.sync:2 reads the response's ExecutionArn, and the state's result is
    # {"ExecutionArn", "Output", "StartDate": <epoch ms>, ...} on AWS.
    if isinstance(response, dict):
        shaped = _api_shape(response)
        response.clear()
        response.update(shaped)


# One lock for every DynamoDB write: a condition and the write it guards happen as one step, as
# on DynamoDB (the slot table's conditional takes rely on it). Writes are fast; one lock suffices.
_dynamodb_writes = threading.Lock()
DYNAMODB_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")


def list_executions(
    self: StepFunctionBackend,
    state_machine_arn: str,
    status_filter: str | None = None,
    max_results: int | None = None,
    next_token: str | None = None,
) -> tuple[list[ExecutionRecord], str | None]:
    """Newest first; the token names the last execution returned, and the next page starts
    after it in the unfiltered list, which only ever grows at its head."""
    executions = sorted(
        self.describe_state_machine(state_machine_arn).executions, key=lambda e: e.start_date, reverse=True
    )
    start = 0
    if next_token:
        arns = [execution.execution_arn for execution in executions]
        try:
            start = arns.index(base64.b64decode(next_token, validate=True).decode()) + 1
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise InvalidToken("Resource not found!") from None
    matching = [e for e in executions[start:] if status_filter is None or e.status == status_filter]
    page = matching[: max_results or 100]
    more = len(matching) > len(page)
    return page, base64.b64encode(page[-1].execution_arn.encode()).decode() if more else None


def _atomic(write: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(write)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with _dynamodb_writes:
            return write(*args, **kwargs)

    return locked


def apply() -> None:
    global _applied
    if _applied:
        return
    SimpleSystemManagerBackend.send_command = send_command  # type: ignore[method-assign,assignment]
    Command._get_instance_ids_from_targets = _instance_ids_from_targets  # type: ignore[method-assign]
    SimpleSystemManagerResponse.list_command_invocations = _list_command_invocations  # type: ignore[attr-defined]
    SimpleSystemManagerResponse.describe_instance_information = _describe_instance_information  # type: ignore[attr-defined]
    SimpleSystemManagerResponse.cancel_command = _cancel_command  # type: ignore[attr-defined]
    StepFunctionBackend.list_executions = list_executions  # type: ignore[method-assign,assignment]
    StepFunctionResponse.send_task_failure = _send_task_failure  # type: ignore[method-assign]
    Execution.stop = _stop_execution  # type: ignore[method-assign]
    StateTaskServiceCallback._eval_execution = _callback_execution  # type: ignore[method-assign,assignment]
    BaseExecutionWorkerCommunication._reflect_execution_status = _reflect_execution_status  # type: ignore[method-assign]
    StateTaskServiceSfn._normalise_parameters = _sfn_parameters  # type: ignore[method-assign]
    StateTaskServiceSfn._normalise_response = _sfn_response  # type: ignore[method-assign,assignment]
    for name in DYNAMODB_WRITES:
        setattr(DynamoDBBackend, name, _atomic(getattr(DynamoDBBackend, name)))
    _applied = True
