"""Built-in models, one module per family: unet.py, deeplabv3plus.py, torchvision_segmentation.py."""
