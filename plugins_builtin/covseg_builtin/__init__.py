"""covseg's built-in plugins. Each module is registered through the ``covseg`` entry-point group
in covseg's pyproject.toml, exactly as a third-party plugin registers itself."""
