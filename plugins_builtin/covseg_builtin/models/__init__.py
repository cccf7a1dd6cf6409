"""Built-in models. Plugin modules (what pyproject.toml's entry points name): unet.py,
deeplabv3plus.py, torchvision_segmentation.py; each entry is spelled out there with its name,
factory and description. The networks are in networks/, imported by the factories only."""
