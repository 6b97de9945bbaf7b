"""The Hydra config tree lives at the top level (``configs/``, as the project card lays it
out) and ships inside the wheel as the package ``equissl.configs``; setuptools' declarative
``packages.find`` cannot add a package from outside its folder, hence this file."""

from setuptools import find_namespace_packages, find_packages, setup

setup(
    packages=[
        *find_packages(include=["equissl", "equissl.*"]),
        "equissl.configs",
        # the sweep launcher: Hydra loads launchers only from the hydra_plugins namespace
        *find_namespace_packages(include=["hydra_plugins.equissl_launcher"]),
    ],
    package_dir={"equissl.configs": "configs"},
)
