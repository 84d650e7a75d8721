"""moto's server for the worker tests, with one fix: moto 5.2.5's SendTaskFailure handler
passes `error` to its backend but drops `cause`, so no test could see the cause the callback
wrapper sends. The backend itself (the executing engine) already takes a cause; this only
hands it over. Run: python moto_server_keeping_cause.py -H 127.0.0.1 -p PORT
"""

import sys

from moto.core.responses import EmptyResult
from moto.server import main
from moto.stepfunctions.responses import StepFunctionResponse


def send_task_failure(self: StepFunctionResponse) -> EmptyResult:
    # In execution mode the backend is moto's StepFunctionsParserBackend, which takes a cause.
    self.stepfunction_backend.send_task_failure(  # type: ignore[call-arg]
        self._get_param("taskToken"), error=self._get_param("error"), cause=self._get_param("cause")
    )
    return EmptyResult()


StepFunctionResponse.send_task_failure = send_task_failure  # type: ignore[method-assign]

if __name__ == "__main__":
    main(sys.argv[1:])
