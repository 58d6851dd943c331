"""Node parameters written once: one table of `ParameterSpec` per node, and what is driven from it.

From a node's table come its declaration (descriptors with description,
range and read-only), the check of every value given at start (`-p`, a
params file) or set at runtime (`ros2 param set`: a refused value keeps the
old one, and the reason is the answer), the values the node reads, its
launch arguments and the README's parameter tables (a test compares them).

Numbers are forgiving where ROS is not: `-p poll_period_s:=1` is an integer
to ROS, and becomes 1.0 for a double parameter. This module and the nodes'
tables import nothing heavy (no HTTP client, numpy or onnxruntime), so that
launch files can take their arguments from them.
"""

from __future__ import annotations

import array
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
    from rclpy.node import Node
    from rclpy.parameter import Parameter

Value = Union[str, float, int, bool, tuple[str, ...]]  # noqa: UP007 - evaluated at runtime on Python 3.10
# A further check of a well-typed value: "" when it is good, else why it is refused.
Check = Callable[[Any], str]


class ParameterError(ValueError):
    """A parameter value given at start is refused; the message names the parameter and says why.

    A plain ValueError: launch files import this module, and must not need the HTTP client for it.
    """

    code = "invalid_parameter"


@dataclass(frozen=True)
class ParameterSpec:
    """One parameter: its type is the default's (a tuple is a string array)."""

    name: str
    default: Value
    description: str
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] = ()
    read_only: bool = False
    check: Check | None = None
    check_text: str = ""  # what `check` asks for, shown beside the range or choices

    def __post_init__(self) -> None:
        if self.kind == "string_array" and self.read_only:
            # declare() gives a list its (typed) value by a set after the declaration, which read-only refuses.
            raise ValueError(f"{self.name}: a string array parameter cannot be read-only")
        if self.value_problem(self.default):  # (not `check`: it may look at files or import the node's modules)
            raise ValueError(f"{self.name}: its default is refused: {self.value_problem(self.default)}")

    @property
    def kind(self) -> str:
        if isinstance(self.default, bool):
            return "bool"
        if isinstance(self.default, int):
            return "integer"
        if isinstance(self.default, float):
            return "double"
        if isinstance(self.default, tuple):
            return "string_array"
        return "string"

    def constraint(self) -> str:
        """The allowed values in words ('' when any value of the type goes)."""
        parts = []
        if self.range is not None:
            low, high = self.range
            parts.append(f"{_number(low)}..{_number(high)}")
        if self.choices:
            parts.append(" | ".join(self.choices))
        if self.check_text:
            parts.append(self.check_text)
        return "; ".join(parts)

    def coerce(self, value: Any) -> Any:
        """`value` as this parameter's type where that loses nothing (an integer for a double, a list)."""
        if self.kind == "double" and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if self.kind == "string_array" and value is None:
            return ()  # an empty list in a params file arrives with no type and no value
        if self.kind == "string_array" and isinstance(value, (list, tuple, array.array)):
            return tuple(value)  # an empty list set at runtime arrives typed as bytes or booleans
        return value

    def problem(self, value: Any) -> str:
        """Why `value` is refused for this parameter, or '' when it is good."""
        reason = self.value_problem(value)
        if reason or self.check is None:
            return reason
        return self.check(self.coerce(value))

    def value_problem(self, value: Any) -> str:
        """Why `value` is refused by the type, range or choices ('' when it is not)."""
        value = self.coerce(value)
        shown = _shown(value)
        expected = {"bool": "true or false", "integer": "an integer", "double": "a number",
                    "string": "a string", "string_array": "a list of strings"}[self.kind]
        if not _has_kind(value, self.kind):
            return f"{self.name}: {shown} must be {expected}"
        if self.kind == "double" and not math.isfinite(value):
            return f"{self.name}: {shown} must be a finite number"
        if self.range is not None and not self.range[0] <= value <= self.range[1]:
            return f"{self.name}: {shown} must be in {self.constraint().split(';')[0]}"
        if self.choices and value not in self.choices:
            return f"{self.name}: {shown} must be one of {', '.join(self.choices)}"
        return ""

    def launch_description(self) -> str:
        """Its description as a launch argument, which overrides the params file only when given."""
        default = format_value(self.default) if self.default not in ("", ()) else "empty"
        return f"{self.description} Unset: the params file's value, else {default}."

    def parse_launch_value(self, text: str) -> Value:
        """A launch argument's text as this parameter's type; ParameterError says why not."""
        if self.kind == "string":
            return text
        if self.kind == "bool" and text.strip().lower() in ("true", "false"):
            return text.strip().lower() == "true"
        try:
            if self.kind == "integer":
                return int(text)
            if self.kind == "double":
                return float(text)
        except ValueError:
            pass
        raise ParameterError(f"{self.name}:={text} must be {'true or false' if self.kind == 'bool' else 'a number'}")


def _has_kind(value: Any, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "double":
        return isinstance(value, float)
    if kind == "string_array":
        return isinstance(value, tuple) and all(isinstance(v, str) for v in value)
    return isinstance(value, str)


def _number(value: float) -> str:
    return f"{value:g}"


def _shown(value: Any) -> str:
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


def format_value(value: Value) -> str:
    """A value as a README table or a YAML file writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def markdown_table(specs: Sequence[ParameterSpec]) -> str:
    """The README's table of these parameters (a test keeps the README equal to it)."""
    rows = ["| parameter | type | default | allowed | meaning |", "| --- | --- | --- | --- | --- |"]
    for spec in specs:
        kind = spec.kind.replace("_", " ") + (", read-only" if spec.read_only else "")
        allowed = spec.constraint().replace("|", "\\|")
        rows.append(f"| `{spec.name}` | {kind} | `{format_value(spec.default)}` | {allowed} | "
                    f"{spec.description} |")
    return "\n".join(rows) + "\n"


def launch_overrides(specs: Iterable[ParameterSpec], configurations: Mapping[str, str]) -> dict[str, Value]:
    """Typed values of the launch arguments the user gave (non-empty): they override the params file.

    `configurations` are the launch configurations (an argument not given is ""); besides the specs'
    parameters, `use_sim_time`, which every node has, overrides the file when given too.
    """
    overrides: dict[str, Value] = {}
    for spec in specs:
        text = configurations.get(spec.name, "")
        if text != "":
            overrides[spec.name] = spec.parse_launch_value(text)
    use_sim_time = configurations.get("use_sim_time", "")
    if use_sim_time != "":
        overrides["use_sim_time"] = use_sim_time.lower() == "true"
    return overrides


# --- on a node ---------------------------------------------------------------------------------------
def descriptor(spec: ParameterSpec) -> ParameterDescriptor:
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
    from rclpy.parameter import Parameter

    kind = {"bool": Parameter.Type.BOOL, "integer": Parameter.Type.INTEGER, "double": Parameter.Type.DOUBLE,
            "string": Parameter.Type.STRING, "string_array": Parameter.Type.STRING_ARRAY}[spec.kind]
    described = ParameterDescriptor(name=spec.name, type=kind.value, description=spec.description,
                                    additional_constraints=spec.constraint(), read_only=spec.read_only)
    if spec.range is not None and spec.kind == "double":
        described.floating_point_range = [FloatingPointRange(from_value=float(spec.range[0]),
                                                             to_value=float(spec.range[1]), step=0.0)]
    if spec.range is not None and spec.kind == "integer":
        described.integer_range = [IntegerRange(from_value=int(spec.range[0]), to_value=int(spec.range[1]),
                                                step=1)]
    return described


def declare(node: Node, specs: Sequence[ParameterSpec]) -> None:
    """Declare every parameter with its descriptor and value; check values set later.

    A value given at start that the spec refuses raises ParameterError (the
    node cannot start); one set at runtime is refused with the reason.
    """
    from rclpy.parameter import Parameter

    # rclpy keeps the values of -p and params files here until a parameter is declared (Humble..Kilted);
    # they are checked, and typed as declared, before rclpy sees them.
    overrides: dict[str, Parameter] = getattr(node, "_parameter_overrides", {})
    for spec in specs:
        if spec.name in overrides:
            value = spec.coerce(overrides[spec.name].value)
            reason = spec.problem(value)
            if reason:
                raise ParameterError(reason)
            overrides[spec.name] = _typed(spec, value)
    for spec in specs:
        value = spec.coerce(overrides[spec.name].value) if spec.name in overrides else spec.default
        if spec.kind == "string_array":
            # rclpy would type an empty list as bytes: declare the type, then set the typed value.
            node.declare_parameter(spec.name, Parameter.Type.STRING_ARRAY, descriptor(spec), ignore_override=True)
            node.set_parameters([_typed(spec, value)])
        else:
            node.declare_parameter(spec.name, value, descriptor(spec), ignore_override=True)
    by_name = {spec.name: spec for spec in specs}
    node.add_on_set_parameters_callback(lambda parameters: _check_set(by_name, parameters))
    if hasattr(node, "add_pre_set_parameters_callback"):  # Iron and later: `param set x 1` for a double
        node.add_pre_set_parameters_callback(lambda parameters: _coerce_set(by_name, parameters))


def read(node: Node, specs: Sequence[ParameterSpec]) -> dict[str, Any]:
    """name -> the parameter's value as the spec types it (floats for doubles, tuples for arrays)."""
    return {spec.name: spec.coerce(node.get_parameter(spec.name).value) for spec in specs}


def _typed(spec: ParameterSpec, value: Any) -> Parameter:
    from rclpy.parameter import Parameter

    if spec.kind == "string_array":
        return Parameter(spec.name, Parameter.Type.STRING_ARRAY, list(value))
    return Parameter(spec.name, value=value)


def _check_set(specs: Mapping[str, ParameterSpec], parameters: list[Parameter]) -> SetParametersResult:
    from rcl_interfaces.msg import SetParametersResult

    for parameter in parameters:
        spec = specs.get(parameter.name)
        reason = spec.problem(parameter.value) if spec is not None else ""
        if reason:
            return SetParametersResult(successful=False, reason=reason)
    return SetParametersResult(successful=True)


def _coerce_set(specs: Mapping[str, ParameterSpec], parameters: list[Parameter]) -> list[Parameter]:
    coerced = []
    for parameter in parameters:
        spec = specs.get(parameter.name)
        if spec is not None and spec.coerce(parameter.value) is not parameter.value \
                and not spec.problem(parameter.value):
            parameter = _typed(spec, spec.coerce(parameter.value))
        coerced.append(parameter)
    return coerced
