"""The networks of the built-in models, imported by their factories only when a model is built:
they import torch (and timm, torchvision), which listing models must not."""
