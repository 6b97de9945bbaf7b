"""The Hydra config tree lives at the top level (``configs/``, as the project card lays it
out) and ships inside the wheel as the package ``equissl.configs``; setuptools' declarative
``packages.find`` cannot add a package from outside its folder, hence this file."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["equissl", "equissl.*"]), "equissl.configs"],
    package_dir={"equissl.configs": "configs"},
)
