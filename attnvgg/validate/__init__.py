"""Parity of every runner against the PyTorch reference, and accuracy on labelled data."""
