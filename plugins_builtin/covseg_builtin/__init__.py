"""covseg's built-in plugins, written as a third party writes one: they import only
:mod:`covseg.plugins`, and each plugin module is announced in the ``covseg`` entry-point group of
covseg's pyproject.toml (the one list of them). A source checkout run without installed metadata
finds the same modules by walking this package (:mod:`covseg.core.discovery`)."""
