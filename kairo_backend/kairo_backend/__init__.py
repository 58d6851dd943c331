"""kairo_backend: the Kairo Models API served locally, with real training.

Knows nothing of ROS: it serves HTTP, stores datasets, trains with torch in
worker processes and exports ONNX files whose metadata wires a ROS node.
"""

__version__ = "0.1.0"
