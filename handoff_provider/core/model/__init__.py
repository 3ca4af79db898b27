"""Pure values: the run context, run keys, which values are secrets."""
