"""Read template.yaml and resolve its intrinsic functions for a local deployment.

The local stack and the unit tests build their resources from the template's own
definitions through this module, so they cannot drift from what `sam deploy` creates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = ROOT / "template.yaml"
ACCOUNT_ID = "123456789012"


class _CfnLoader(yaml.SafeLoader):  # type: ignore[misc]
    """YAML loader that turns CloudFormation short forms (!Ref, !Sub, …) into long forms."""


def _construct_tag(loader: _CfnLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(path.read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506
    return loaded


# Where a resource's Ref is one of its own properties; otherwise it gets a generated name.
_NAME_PROPERTY = {
    "AWS::SSM::Parameter": "Name",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::ECR::Repository": "RepositoryName",
    "AWS::Serverless::StateMachine": "Name",
    "AWS::Serverless::Function": "FunctionName",
    # The same resources after the SAM transform (tests/security read the transformed template).
    "AWS::StepFunctions::StateMachine": "StateMachineName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::IAM::Role": "RoleName",
}


@dataclass
class Stack:
    """A local deployment of template.yaml: its name, region and parameter values."""

    name: str = "run-job"
    region: str = "us-east-1"
    account: str = ACCOUNT_ID
    parameters: dict[str, str] = field(default_factory=dict)
    template: dict[str, Any] = field(default_factory=load_template)

    @cached_property
    def resources(self) -> dict[str, dict[str, Any]]:
        resources: dict[str, dict[str, Any]] = self.template["Resources"]
        return resources

    def properties(self, logical_id: str) -> dict[str, Any]:
        """A resource's properties with every intrinsic function resolved."""
        resolved: dict[str, Any] = self.resolve(self.resources[logical_id].get("Properties", {}))
        return resolved

    def parameter(self, name: str) -> str:
        if name in self.parameters:
            return self.parameters[name]
        return str(self.template["Parameters"][name].get("Default", ""))

    def physical_name(self, logical_id: str) -> str:
        resource = self.resources[logical_id]
        prop = _NAME_PROPERTY.get(resource["Type"])
        if prop and prop in resource.get("Properties", {}):
            return str(self.resolve(resource["Properties"][prop]))
        if resource["Type"] == "AWS::S3::Bucket":  # bucket names are lower case
            return f"{self.name}-{logical_id}".lower()
        return f"{self.name}-{logical_id}"

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account}:{resource}"

    def _ref(self, name: str) -> str:
        pseudo = {
            "AWS::StackName": self.name,
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.template.get("Parameters", {}):
            return self.parameter(name)
        kind = self.resources[name]["Type"]
        physical = self.physical_name(name)
        if kind in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"):
            return self.arn("states", f"stateMachine:{physical}")
        if kind == "AWS::IAM::ManagedPolicy":
            return f"arn:aws:iam::{self.account}:policy/{physical}"
        return physical

    def get_att(self, logical_id: str, attribute: str) -> str:
        kind = self.resources[logical_id]["Type"]
        physical = self.physical_name(logical_id)
        attributes = {
            ("AWS::DynamoDB::Table", "Arn"): self.arn("dynamodb", f"table/{physical}"),
            ("AWS::Logs::LogGroup", "Arn"): self.arn("logs", f"log-group:{physical}:*"),
            ("AWS::ECR::Repository", "Arn"): self.arn("ecr", f"repository/{physical}"),
            ("AWS::ECR::Repository", "RepositoryUri"): (
                f"{self.account}.dkr.ecr.{self.region}.amazonaws.com/{physical}"
            ),
            ("AWS::Serverless::Function", "Arn"): self.arn("lambda", f"function:{physical}"),
            ("AWS::Serverless::StateMachine", "Name"): physical,
            ("AWS::S3::Bucket", "Arn"): f"arn:aws:s3:::{physical}",
            ("AWS::Lambda::Function", "Arn"): self.arn("lambda", f"function:{physical}"),
            ("AWS::StepFunctions::StateMachine", "Name"): physical,
            ("AWS::IAM::Role", "Arn"): f"arn:aws:iam::{self.account}:role/{physical}",
        }
        try:
            return attributes[(kind, attribute)]
        except KeyError:
            raise KeyError(f"{logical_id}.{attribute} is not known to the local stack") from None

    def _sub(self, text: str, variables: dict[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name:
                return self.get_att(*name.split(".", 1))
            return self._ref(name)

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def resolve(self, value: Any) -> Any:
        """Resolve Ref, Fn::Sub, Fn::GetAtt and Fn::Join, recursively."""
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Ref"}:
            return self._ref(value["Ref"])
        if set(value) == {"Fn::GetAtt"}:
            return self.get_att(*value["Fn::GetAtt"])
        if set(value) == {"Fn::Sub"}:
            sub = value["Fn::Sub"]
            text, variables = (sub, {}) if isinstance(sub, str) else sub
            return self._sub(text, variables)
        if set(value) == {"Fn::Join"}:
            separator, items = value["Fn::Join"]
            return separator.join(str(item) for item in self.resolve(items))
        return {key: self.resolve(item) for key, item in value.items()}
