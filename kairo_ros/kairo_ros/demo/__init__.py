"""kairo_ros.demo."""
