"""kairo_ros.manager."""
