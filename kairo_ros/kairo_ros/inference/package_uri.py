"""`package://<package>/<path>` model paths, resolved in the package's installed share directory.

An exported ROS 2 package (format ros2-pkg) names its model this way in its
params file, so the file works wherever the package is installed.
"""

from __future__ import annotations

import pathlib

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

from kairo_ros.inference.errors import ConfigError

SCHEME = "package://"


def resolve_model_path(value: str) -> str:
    """The file a `package://` model_path names; any other value unchanged."""
    if not value.startswith(SCHEME):
        return value
    package, _, relative = value[len(SCHEME):].partition("/")
    parts = relative.split("/")
    if not package or not relative or any(p in ("", ".", "..") for p in parts):
        raise ConfigError(f"model_path: {value!r} must be package://<package>/<path inside its share directory>, "
                          f"e.g. package://kairo_model_abc123_v2/models/model.onnx")
    try:
        share = get_package_share_directory(package)
    except (PackageNotFoundError, ValueError):
        raise ConfigError(f"model_path: package {package!r} is not installed in this environment (not in the "
                          f"ament index of AMENT_PREFIX_PATH); build it with colcon and source its "
                          f"install/setup.bash") from None
    return str(pathlib.Path(share).joinpath(*parts))
