"""kairo_ros.inference."""
