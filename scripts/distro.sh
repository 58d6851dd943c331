# Sourced by env.sh and the scripts: which ROS 2 distro's PyPI wheels this
# workspace uses (ROS_DISTRO_WHEELS, default jazzy) and where its venv and
# colcon trees lie. Jazzy keeps .venv, build/, install/, log/; Kilted gets
# .venv-kilted, build-kilted/, install-kilted/, log-kilted/, because its
# unprefixed ros-* wheels share names with the real wheels Jazzy's pin: the
# two cannot live in one venv. Needs _kairo_root; sets the _kairo_* names below.
_kairo_distro="${ROS_DISTRO_WHEELS:-jazzy}"
case "$_kairo_distro" in
  jazzy) _kairo_suffix="" ;;
  kilted) _kairo_suffix="-kilted" ;;
  *)
    echo "ROS_DISTRO_WHEELS='$_kairo_distro' is not a distro this workspace knows: use jazzy (the default) or kilted." >&2
    return 1 ;;
esac
_kairo_venv="$_kairo_root/.venv$_kairo_suffix"
_kairo_build="$_kairo_root/build$_kairo_suffix"
_kairo_install="$_kairo_root/install$_kairo_suffix"
_kairo_log="$_kairo_root/log$_kairo_suffix"
_kairo_results="$_kairo_root/test-results$_kairo_suffix"
_kairo_requirements="requirements/ros-$_kairo_distro.txt"

# A shell that sourced env.sh for one distro has that venv's PATH and ROS
# paths: building or testing the other distro from it would mix the two.
if [ -n "${VIRTUAL_ENV:-}" ] && [ "$VIRTUAL_ENV" != "$_kairo_venv" ]; then
  case "$VIRTUAL_ENV" in "$_kairo_root"/.venv|"$_kairo_root"/.venv-*)
    echo "this shell has $VIRTUAL_ENV active (another distro's env.sh); for ROS_DISTRO_WHEELS=$_kairo_distro open a new shell." >&2
    return 1 ;;
  esac
fi
