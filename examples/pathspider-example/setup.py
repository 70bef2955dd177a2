"""A third-party pathspider plugin distribution: installs pathspider/plugins/example.py into
the shared ``pathspider.plugins`` namespace package."""
from setuptools import setup

setup(
    name="pathspider-example",
    version="1.0.0",
    description="Example PATHspider plugin",
    license="GPL-2.0-or-later",
    py_modules=["pathspider.plugins.example"],
    install_requires=["pathspider"],
)
