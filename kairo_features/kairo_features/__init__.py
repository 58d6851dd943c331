"""The Kairo features contract (`kairo.features/1`, docs/features.md), in one place.

- `kairo_features.schema`: the document's parser and checks (`parse_features`),
  the ONNX metadata keys (`features_from_metadata`);
- `kairo_features.tasks`: the tasks and their default wiring;
- `kairo_features.fields`: reading an entry's values from a message by dotted path;
- `kairo_features.alignment`: messages into samples (`Aligner`).

numpy only: no ROS, no torch. Importing this package or its schema imports no numpy.
"""

from kairo_features.schema import (
    SCHEMA,
    TASKS,
    FeatureEntry,
    Features,
    FeaturesError,
    Normalisation,
    Range,
    features_from_metadata,
    parse_features,
)

__all__ = ["SCHEMA", "TASKS", "FeatureEntry", "Features", "FeaturesError", "Normalisation", "Range",
           "features_from_metadata", "parse_features"]
