"""covseg-unet-lite: an example third-party covseg plugin."""
