"""kairo_ros.api."""
