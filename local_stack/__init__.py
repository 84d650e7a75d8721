"""The local stack: the whole run-job workflow on one machine, no AWS account.

moto in server mode plays the AWS services (Step Functions with its executing engine,
DynamoDB, SSM, EC2, Lambda's control plane); everything of ours runs for real: the state
machine definition, the dispatch code, the run-container document's script under bash (the
local agent) and the worker image under a real container engine.
"""
