"""Load a launch file with the stand-in API and turn its description into processes to start."""
from __future__ import annotations

import contextlib
import importlib.util
import sys
import tempfile
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence

import yaml

from . import api
from .packages import PackageResolver


@contextlib.contextmanager
def standin_modules() -> Iterator[None]:
    """Installs the stand-in `launch`/`launch_ros` modules in sys.modules for the duration of the block.

    Whatever was there before (nothing, or e.g. the repository's `launch/` directory as a namespace package)
    comes back afterwards, so the stand-ins never leak outside the runner.
    """
    layout = api.standin_modules_exports()
    saved = {name: sys.modules.get(name) for name in layout}
    try:
        for name, exports in layout.items():
            module = types.ModuleType(name, f"sparsedrive_ros stand-in for ROS 2 {name}")
            module.__dict__.update(exports)
            module.__path__ = []  # a package, so that `import launch.actions` finds the submodule in sys.modules
            sys.modules[name] = module
        for name in layout:
            parent, _, child = name.rpartition(".")
            if parent:
                setattr(sys.modules[parent], child, sys.modules[name])
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def load_launch_description(path: Path) -> api.LaunchDescription:
    """Executes the launch file's `generate_launch_description()` against the stand-ins."""
    path = Path(path)
    if not path.is_file():
        raise api.LaunchError(f"launch file {str(path)!r} does not exist")
    with standin_modules():
        spec = importlib.util.spec_from_file_location(f"_sparsedrive_launch_{path.stem.replace('.', '_')}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        generate = getattr(module, "generate_launch_description", None)
        if generate is None:
            raise api.LaunchError(f"{path} defines no generate_launch_description()")
        description = generate()
    if not isinstance(description, api.LaunchDescription):
        raise api.LaunchError(f"{path}: generate_launch_description() returned {type(description).__name__}")
    return description


def declared_arguments(description: api.LaunchDescription) -> List[api.DeclareLaunchArgument]:
    return [e for e in description.entities if isinstance(e, api.DeclareLaunchArgument)]


@dataclass
class ProcessSpec:
    """One child process of a launch: argv, extra environment, and whether its exit ends the launch."""

    name: str
    cmd: List[str]
    env: Dict[str, str] = field(default_factory=dict)
    required: bool = False
    parameters: Dict[str, object] = field(default_factory=dict)  # merged dict parameters, for inspection
    param_files: List[str] = field(default_factory=list)


@dataclass
class LaunchPlan:
    arguments: Dict[str, str]
    processes: List[ProcessSpec]
    skipped: List[str]  # nodes whose condition was false
    temp_dir: Optional[tempfile.TemporaryDirectory] = None

    def cleanup(self) -> None:
        if self.temp_dir is not None:
            self.temp_dir.cleanup()
            self.temp_dir = None


def resolve_arguments(description: api.LaunchDescription, given: Mapping[str, str],
                      context: api.LaunchContext) -> Dict[str, str]:
    """Argument values: given ones, else defaults (evaluated in declaration order); checks choices."""
    values: Dict[str, str] = {}
    context.arguments = values
    declared = declared_arguments(description)
    names = {d.name for d in declared}
    unknown = sorted(set(given) - names)
    if unknown:
        raise api.LaunchError(f"unknown launch arguments {unknown}; declared: {sorted(names)}")
    for decl in declared:
        if decl.name in given:
            values[decl.name] = str(given[decl.name])
        elif decl.default_value is not None:
            values[decl.name] = api.perform(decl.default_value, context)
        else:
            raise api.LaunchError(f"missing required launch argument {decl.name!r} ({decl.description})")
        if decl.choices is not None and values[decl.name] not in decl.choices:
            raise api.LaunchError(f"launch argument {decl.name}:={values[decl.name]!r} is not one of {decl.choices}")
    return values


def plan_launch(description: api.LaunchDescription, given: Mapping[str, str],
                resolver: Optional[PackageResolver] = None) -> LaunchPlan:
    """Evaluates arguments, conditions and substitutions; writes dict parameters to temporary YAML files."""
    resolver = resolver or PackageResolver.default()
    context = api.LaunchContext(arguments={}, find_share=resolver.find_share)
    arguments = resolve_arguments(description, given, context)
    temp_dir = tempfile.TemporaryDirectory(prefix="sparsedrive_launch_")
    plan = LaunchPlan(arguments=arguments, processes=[], skipped=[], temp_dir=temp_dir)
    try:
        for entity in description.entities:
            if isinstance(entity, api.DeclareLaunchArgument):
                continue
            if not entity.enabled(context):
                plan.skipped.append(_entity_label(entity, context))
                continue
            if isinstance(entity, api.Node):
                plan.processes.append(_node_process(entity, context, resolver, Path(temp_dir.name),
                                                    len(plan.processes)))
            else:
                raise api.LaunchError(f"action {type(entity).__name__} is not supported at the top level")
    except BaseException:
        plan.cleanup()
        raise
    return plan


def _entity_label(entity: api.Action, context: api.LaunchContext) -> str:
    if isinstance(entity, api.Node):
        return api.perform(entity.name or entity.executable, context)
    return type(entity).__name__


def _node_process(node: api.Node, context: api.LaunchContext, resolver: PackageResolver, temp_dir: Path,
                  index: int) -> ProcessSpec:
    executable = api.perform(node.executable, context)
    package = api.perform(node.package, context) if node.package is not None else None
    name = api.perform(node.name, context) if node.name is not None else None
    cmd = resolver.executable_command(package, executable) if package else [executable]
    cmd += [api.perform(a, context) for a in node.arguments]
    ros_args: List[str] = [api.perform(a, context) for a in node.ros_arguments]
    if name:
        ros_args += ["-r", f"__node:={name}"]
    if node.namespace is not None:
        namespace = api.perform(node.namespace, context)
        ros_args += ["-r", f"__ns:={namespace if namespace.startswith('/') else '/' + namespace}"]
    merged: Dict[str, object] = {}
    param_files: List[str] = []
    for k, entry in enumerate(node.parameters):
        if isinstance(entry, Mapping):
            values = {str(key): api.evaluate_parameter_value(v, context) for key, v in entry.items()}
            merged.update(values)
            path = temp_dir / f"{index:02d}_{name or executable}_{k}.yaml"
            path.write_text(yaml.safe_dump({"/**": {"ros__parameters": values}}, sort_keys=False))
        else:
            path = Path(api.perform(entry, context))
            if not path.is_file():
                raise api.LaunchError(f"parameter file {str(path)!r} of node {name or executable!r} does not exist")
        param_files.append(str(path))
        ros_args += ["--params-file", str(path)]
    for source, target in node.remappings:
        ros_args += ["-r", f"{api.perform(source, context)}:={api.perform(target, context)}"]
    if ros_args:
        cmd += ["--ros-args", *ros_args]
    return ProcessSpec(name=name or executable, cmd=cmd, required=node.required, parameters=merged,
                       param_files=param_files)


def parse_cli_arguments(items: Sequence[str]) -> Dict[str, str]:
    """`name:=value` items as given to `ros2 launch`."""
    values = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise api.LaunchError(f"launch argument {item!r} is not of the form name:=value")
        values[name] = value
    return values
