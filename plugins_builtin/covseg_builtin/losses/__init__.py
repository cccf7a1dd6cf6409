"""Built-in training losses. Plugin module (what pyproject.toml's entry point names):
segmentation_losses.py; the loss modules are in modules.py, imported when a loss is built."""
