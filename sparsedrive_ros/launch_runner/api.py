"""Stand-ins for the subset of ROS 2 `launch` / `launch_ros` that this package's launch files use.

Only the names below exist; a launch file that uses anything else fails at import with a clear error, which
keeps the shipped launch files inside the subset that both this runner and real `ros2 launch` execute the same
way. Semantics follow launch (Humble..Kilted):

- Substitution values are str, a Substitution, or a list of both (concatenated), as in launch.
- Condition expressions accept true/false/1/0 (case-insensitive) and raise otherwise, as launch does.
- Node parameter dict values that are substitutions are YAML-parsed after substitution (launch_ros turns
  "true" into a bool and "2.0" into a float), unless wrapped in ParameterValue(value_type=str).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import yaml


class LaunchError(RuntimeError):
    """A launch description that cannot be evaluated (missing argument, bad condition, unknown package)."""


@dataclass
class LaunchContext:
    """What substitutions are evaluated against: argument values and how packages resolve."""

    arguments: Dict[str, str]
    find_share: Callable[[str], Path]


class Substitution:
    def perform(self, context: LaunchContext) -> str:
        raise NotImplementedError


SomeSubstitution = Union[str, Substitution, Sequence[Union[str, Substitution]]]


def perform(value: SomeSubstitution, context: LaunchContext) -> str:
    """Evaluates a launch value (text, substitution or list of both) to text."""
    if isinstance(value, str):
        return value
    if isinstance(value, Substitution):
        return value.perform(context)
    if isinstance(value, (list, tuple)):
        return "".join(perform(v, context) for v in value)
    raise LaunchError(f"cannot substitute {value!r} (type {type(value).__name__})")


class TextSubstitution(Substitution):
    def __init__(self, *, text: str):
        self.text = text

    def perform(self, context: LaunchContext) -> str:
        return self.text


class LaunchConfiguration(Substitution):
    def __init__(self, variable_name: SomeSubstitution, *, default: Optional[SomeSubstitution] = None):
        self.variable_name = variable_name
        self.default = default

    def perform(self, context: LaunchContext) -> str:
        name = perform(self.variable_name, context)
        if name in context.arguments:
            return context.arguments[name]
        if self.default is not None:
            return perform(self.default, context)
        raise LaunchError(f"launch configuration {name!r} does not exist (declare it with DeclareLaunchArgument)")


class PathJoinSubstitution(Substitution):
    def __init__(self, substitutions: Sequence[SomeSubstitution]):
        self.substitutions = list(substitutions)

    def perform(self, context: LaunchContext) -> str:
        return os.path.join(*(perform(s, context) for s in self.substitutions))


class FindPackageShare(Substitution):
    def __init__(self, package: SomeSubstitution):
        self.package = package

    def perform(self, context: LaunchContext) -> str:
        return str(context.find_share(perform(self.package, context)))


def evaluate_condition_expression(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise LaunchError(f"condition expression {text!r} is not one of true, false, 1, 0")


class Condition:
    def evaluate(self, context: LaunchContext) -> bool:
        raise NotImplementedError


class IfCondition(Condition):
    def __init__(self, predicate_expression: SomeSubstitution):
        self.predicate_expression = predicate_expression

    def evaluate(self, context: LaunchContext) -> bool:
        return evaluate_condition_expression(perform(self.predicate_expression, context))


class UnlessCondition(IfCondition):
    def evaluate(self, context: LaunchContext) -> bool:
        return not super().evaluate(context)


class Action:
    """Base of the stand-in actions; `condition` decides whether the action runs, as in launch."""

    def __init__(self, *, condition: Optional[Condition] = None):
        self.condition = condition

    def enabled(self, context: LaunchContext) -> bool:
        return self.condition is None or self.condition.evaluate(context)


class DeclareLaunchArgument(Action):
    def __init__(self, name: str, *, default_value: Optional[SomeSubstitution] = None, description: str = "",
                 choices: Optional[Sequence[str]] = None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(name, str) or not name:
            raise LaunchError(f"launch argument name must be a non-empty str, got {name!r}")
        self.name = name
        self.default_value = default_value
        self.description = description
        self.choices = list(choices) if choices is not None else None


class Shutdown(Action):
    """As an `on_exit` of a Node: the whole launch shuts down when that process exits."""

    def __init__(self, *, reason: str = "", **kwargs):
        super().__init__(**kwargs)
        self.reason = reason


class LaunchDescription:
    def __init__(self, initial_entities: Optional[Iterable[Action]] = None):
        self.entities: List[Action] = list(initial_entities or [])

    def add_action(self, action: Action) -> None:
        self.entities.append(action)


@dataclass
class ParameterValue:
    """launch_ros.parameter_descriptions.ParameterValue: fixes the type a substituted value is parsed to."""

    value: Any
    value_type: Optional[type] = None


ParameterFile = Union[SomeSubstitution, Mapping[str, Any]]


class Node(Action):
    """launch_ros.actions.Node: one ROS node run as a child process.

    Supported: package, executable, name, namespace, parameters (YAML file paths and dicts), remappings,
    arguments, ros_arguments, output, on_exit (a Shutdown makes the node required), respawn=False, condition.
    """

    def __init__(self, *, executable: SomeSubstitution, package: Optional[SomeSubstitution] = None,
                 name: Optional[SomeSubstitution] = None, namespace: Optional[SomeSubstitution] = None,
                 parameters: Optional[Sequence[ParameterFile]] = None,
                 remappings: Optional[Sequence[Tuple[SomeSubstitution, SomeSubstitution]]] = None,
                 arguments: Optional[Sequence[SomeSubstitution]] = None,
                 ros_arguments: Optional[Sequence[SomeSubstitution]] = None, output: str = "log",
                 on_exit: Optional[Union[Action, Sequence[Action]]] = None, respawn: Any = False,
                 condition: Optional[Condition] = None, **unsupported):
        super().__init__(condition=condition)
        if unsupported:
            raise LaunchError(f"Node arguments {sorted(unsupported)} are not supported by the stand-in launch runner")
        if respawn not in (False, "false", "False"):
            raise LaunchError(f"Node(respawn={respawn!r}) is not supported by the stand-in launch runner")
        self.package = package
        self.executable = executable
        self.name = name
        self.namespace = namespace
        self.parameters = list(parameters or [])
        self.remappings = list(remappings or [])
        self.arguments = list(arguments or [])
        self.ros_arguments = list(ros_arguments or [])
        self.output = output
        exits = on_exit if isinstance(on_exit, (list, tuple)) else ([on_exit] if on_exit is not None else [])
        for action in exits:
            if not isinstance(action, Shutdown):
                raise LaunchError(f"Node(on_exit=...) supports only Shutdown(), got {type(action).__name__}")
        self.required = bool(exits)


def evaluate_parameter_value(value: Any, context: LaunchContext) -> Any:
    """A dict parameter value after substitution, typed the way launch_ros types it."""
    if isinstance(value, ParameterValue):
        text = perform(value.value, context) if _is_substitution(value.value) else value.value
        if value.value_type is None or not isinstance(text, str):
            return _yaml_scalar(text) if isinstance(text, str) else text
        if value.value_type is str:
            return text
        if value.value_type is bool:
            return evaluate_condition_expression(text)
        return value.value_type(text)
    if isinstance(value, Substitution) or (isinstance(value, (list, tuple)) and value
                                          and all(isinstance(v, (str, Substitution)) for v in value)
                                          and any(isinstance(v, Substitution) for v in value)):
        return _yaml_scalar(perform(value, context))
    if isinstance(value, Mapping):
        return {k: evaluate_parameter_value(v, context) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [evaluate_parameter_value(v, context) for v in value]
    return value


def _is_substitution(value: Any) -> bool:
    return isinstance(value, Substitution) or (
        isinstance(value, (list, tuple)) and any(isinstance(v, Substitution) for v in value))


def _yaml_scalar(text: str) -> Any:
    parsed = yaml.safe_load(text) if text.strip() else ""
    # launch_ros keeps the text when YAML gives a container: a parameter holds scalars or lists of scalars.
    if parsed is None:
        return ""
    if isinstance(parsed, (bool, int, float, str)):
        return parsed
    if isinstance(parsed, list) and all(isinstance(v, (bool, int, float, str)) for v in parsed):
        return parsed
    return text


def standin_modules_exports() -> Dict[str, Dict[str, Any]]:
    """Which stand-in names each fake module exports: the only API surface the launch files may use."""
    return {
        "launch": {"LaunchDescription": LaunchDescription, "LaunchContext": LaunchContext,
                   "Substitution": Substitution, "Action": Action, "Condition": Condition},
        "launch.actions": {"DeclareLaunchArgument": DeclareLaunchArgument, "Shutdown": Shutdown},
        "launch.substitutions": {"LaunchConfiguration": LaunchConfiguration, "TextSubstitution": TextSubstitution,
                                 "PathJoinSubstitution": PathJoinSubstitution},
        "launch.conditions": {"IfCondition": IfCondition, "UnlessCondition": UnlessCondition},
        "launch_ros": {},
        "launch_ros.actions": {"Node": Node},
        "launch_ros.substitutions": {"FindPackageShare": FindPackageShare},
        "launch_ros.parameter_descriptions": {"ParameterValue": ParameterValue},
    }
