# Source after activating the venv:  . .venv/bin/activate && . scripts/ros_env.sh
# Keeps DDS discovery on this host, enlarges the Fast DDS shared-memory segment so camera-sized messages
# are not fragmented (see docs/ros2_environment.md), and makes ament_index lookups work in the venv.
_lingbot_root=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}   # Kilted ignores ROS_LOCALHOST_ONLY
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-0}
export AMENT_PREFIX_PATH="${VIRTUAL_ENV:-$_lingbot_root/.venv}${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export FASTDDS_DEFAULT_PROFILES_FILE=${FASTDDS_DEFAULT_PROFILES_FILE:-$_lingbot_root/config/fastdds_shm.xml}
export ROS_LOG_DIR=${ROS_LOG_DIR:-/tmp/lingbot_va_ros_logs}
unset _lingbot_root
