"""Built-in validation metrics: segmentation.py (IoU, Dice and pixel accuracy from one confusion matrix)."""
