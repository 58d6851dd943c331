# Source me: `source env.sh` gives a shell with the venv, ROS 2 and the built
# workspace (every kairo console script on PATH), with DDS kept on this host.
# `ROS_DISTRO_WHEELS=kilted source env.sh` gives the Kilted workspace instead
# (default: jazzy). Run `make setup` (with the same ROS_DISTRO_WHEELS) first.
_kairo_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"
_kairo_forget() {
  unset _kairo_root _kairo_had_u _kairo_make _kairo_distro _kairo_suffix _kairo_venv _kairo_build \
    _kairo_install _kairo_log _kairo_results _kairo_requirements
  unset -f _kairo_forget
}
# shellcheck source=scripts/distro.sh
if ! . "$_kairo_root/scripts/distro.sh"; then
  _kairo_forget
  return 1 2>/dev/null || exit 1
fi
if [ ! -f "$_kairo_venv/bin/activate" ] || [ ! -f "$_kairo_install/setup.bash" ]; then
  _kairo_make="make setup"
  [ "$_kairo_distro" = jazzy ] || _kairo_make="make setup ROS_DISTRO_WHEELS=$_kairo_distro"
  echo "env.sh: the $_kairo_distro workspace is not set up; run '$_kairo_make' in $_kairo_root" >&2
  _kairo_forget
  return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
. "$_kairo_venv/bin/activate"
if [ -z "${ROS_DISTRO:-}" ]; then
  # ROS 2 from the PyPI wheels lives in the venv itself.
  export ROS_DISTRO_WHEELS="$_kairo_distro"
  case ":${AMENT_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; *)
    export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;; esac
  case ":${CMAKE_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; *)
    export CMAKE_PREFIX_PATH="$VIRTUAL_ENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}" ;; esac
fi
# colcon's setup scripts read unset variables: they fail under `set -u`.
case $- in *u*) _kairo_had_u=1; set +u ;; *) _kairo_had_u= ;; esac
# shellcheck disable=SC1091
. "$_kairo_install/setup.bash"
[ -n "$_kairo_had_u" ] && set -u
# Without ros2cli (`ros2 run`), console scripts are run by name.
case ":$PATH:" in *":$_kairo_install/kairo_ros/lib/kairo_ros:"*) ;; *)
  export PATH="$_kairo_install/kairo_ros/lib/kairo_ros:$PATH" ;; esac
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
export KAIRO_ROOT="$_kairo_root"
_kairo_forget
