"""Training side: features, datasets, demo data (numpy only) and the torch trainer.

Only `nets`, `trainer`, `export`, `worker` and `calibrate` import torch; the
server imports the numpy-only modules.
"""
