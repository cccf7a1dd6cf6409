"""covseg's small core: hook specifications, plugin entries and the registry that finds them."""
