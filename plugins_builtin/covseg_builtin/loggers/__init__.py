"""Built-in experiment loggers. Plugin module (what pyproject.toml's entry point names):
tensorboard.py (``--log tensorboard``, the ``covseg[tensorboard]`` extra)."""
