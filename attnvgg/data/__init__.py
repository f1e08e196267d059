"""Data: preprocessing, data set loaders, the built-in synthetic set and the small trainer.

Every stage that feeds a model (export checks, calibration, evaluation, benchmarks) reads
data through ``open_dataset`` with the model's ``PreprocessSpec``, so all of them see the
same tensors. Importing this package loads numpy only; PIL and torch load when used.
The trainer is ``attnvgg.data.train.train`` (not re-exported here: the name would shadow
its module).
"""

from attnvgg.data.datasets import Dataset, open_dataset
from attnvgg.data.preprocess import preprocess_array, preprocess_image, spec_hash
from attnvgg.data.synthetic import class_names
from attnvgg.data.train import builtin_model_config, load_model_toml

__all__ = ["Dataset", "open_dataset", "preprocess_array", "preprocess_image", "spec_hash", "class_names",
           "builtin_model_config", "load_model_toml"]
