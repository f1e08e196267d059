"""attnvgg: a deployment pipeline for attention-augmented CNNs.

Package import stays light: torch, onnxruntime, tensorrt and matplotlib are imported
inside the functions that use them, so ``attnvgg --help`` starts in well under a second.
"""

__version__ = "0.1.0"
