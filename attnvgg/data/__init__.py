"""Data: preprocessing, data set loaders, the built-in synthetic set and the small trainer.

Every stage that feeds a model (export checks, calibration, evaluation, benchmarks) reads
data through ``open_dataset`` with the model's ``PreprocessSpec``, so all of them see the
same tensors. Importing this package loads numpy only; PIL and torch load when used.
"""
