# Source me: `source env.sh` gives a shell with the venv, ROS 2 and the built
# workspace (every kairo console script on PATH), with DDS kept on this host.
# Run `make setup` first.
_kairo_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"
if [ ! -f "$_kairo_root/.venv/bin/activate" ] || [ ! -f "$_kairo_root/install/setup.bash" ]; then
  echo "env.sh: the workspace is not set up; run 'make setup' in $_kairo_root" >&2
  return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
. "$_kairo_root/.venv/bin/activate"
if [ -z "${ROS_DISTRO:-}" ]; then
  # ROS 2 from the PyPI wheels lives in the venv itself.
  case ":${AMENT_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; *)
    export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;; esac
  case ":${CMAKE_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; *)
    export CMAKE_PREFIX_PATH="$VIRTUAL_ENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}" ;; esac
fi
# colcon's setup scripts read unset variables: they fail under `set -u`.
case $- in *u*) _kairo_had_u=1; set +u ;; *) _kairo_had_u= ;; esac
# shellcheck disable=SC1091
. "$_kairo_root/install/setup.bash"
[ -n "$_kairo_had_u" ] && set -u
# Without ros2cli (`ros2 run`), console scripts are run by name.
case ":$PATH:" in *":$_kairo_root/install/kairo_ros/lib/kairo_ros:"*) ;; *)
  export PATH="$_kairo_root/install/kairo_ros/lib/kairo_ros:$PATH" ;; esac
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
export KAIRO_ROOT="$_kairo_root"
unset _kairo_root _kairo_had_u
