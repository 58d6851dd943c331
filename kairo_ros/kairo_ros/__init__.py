"""ROS 2 integration for the Kairo Models API."""
