# Environment for this project's tools and tests. Source it from bash: `. scripts/env.sh`
# (the Makefile does this for you). Safe to source more than once.
_sd_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_sd_venv="${SPARSEDRIVE_VENV:-$_sd_repo/.venv}"

export VIRTUAL_ENV="$_sd_venv"
case ":$PATH:" in *":$_sd_venv/bin:"*) ;; *) export PATH="$_sd_venv/bin:$PATH" ;; esac
# ament_index look-ups (message packages, our own share/) and interface builds search AMENT_PREFIX_PATH.
case ":${AMENT_PREFIX_PATH:-}:" in
  *":$_sd_venv:"*) ;;
  *) export AMENT_PREFIX_PATH="$_sd_venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;;
esac
# Discovery stays on this machine (Kilted ignores ROS_LOCALHOST_ONLY). Keep a domain the caller chose.
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-42}"
# Large images need shared memory with big messages; Fast DDS 3 and 2.x read different variables.
export FASTDDS_DEFAULT_PROFILES_FILE="$_sd_repo/config/fastdds_profile.xml"
export FASTRTPS_DEFAULT_PROFILES_FILE="$_sd_repo/config/fastdds_profile.xml"
# The PyPI wheels ship only rmw_fastrtps_cpp: any other value makes rclpy.init() exit. A real ROS 2 install
# (ROS_DISTRO set before sourcing us) keeps the user's choice.
if [ -z "${SPARSEDRIVE_SYSTEM_ROS:-}" ] && [ ! -e "$_sd_venv/.sparsedrive-system-ros" ]; then
  unset RMW_IMPLEMENTATION
fi
unset _sd_repo _sd_venv
