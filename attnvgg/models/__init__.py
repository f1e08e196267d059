"""Attention modules, VGG16 with attention, checkpoint loading and model building from a spec."""
