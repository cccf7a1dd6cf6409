"""One module per CLI command group; :mod:`covseg.cli` wires them into the Typer app."""
