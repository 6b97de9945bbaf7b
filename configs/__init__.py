"""Hydra config tree of equissl (a package so that Hydra finds it when installed)."""
