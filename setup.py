"""Packaging for pathspider.

The version is read from ``pathspider/version.py`` as text so that building the package never
imports its runtime dependencies.

The Observer's meter (the dissector, the flow table and the chain library) is compiled with
Cython in pure-Python mode: each ``.py`` file is the only source, its ``.pxd`` beside it adds C
types. The meter is built whole or not at all (its modules use each other's C types): without
Cython or a C compiler the build goes on, no extension is left behind, and the same files run
interpreted (the Observer logs which meter it runs, see pathspider/observer/build.py).
"""
import ast
import os
import re
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent

#: The compiled meter: modules of pathspider.observer, listed in pathspider/observer/build.py.
METER_MODULES = ast.literal_eval(re.search(
    r"^METER_MODULES = (\([^)]*\))", (HERE / "pathspider" / "observer" / "build.py").read_text(),
    re.M).group(1))


def meter_extensions():
    """The meter's extension modules, or none when Cython is missing (interpreted meter)."""
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("setup.py: Cython is not installed: the Observer's meter stays interpreted",
              file=sys.stderr)
        return []
    extensions = [Extension("pathspider.observer." + name, ["pathspider/observer/%s.py" % name])
                  for name in METER_MODULES]
    extensions = cythonize(extensions, build_dir="build/cython", quiet=True,
                           compiler_directives={"language_level": 3, "annotation_typing": False,
                                                "embedsignature": True})
    for extension in extensions:
        extension.optional = True           # (cythonize does not keep it)
    return extensions


class BuildMeter(build_ext):
    """build_ext for the meter: in parallel, and all of it or nothing.

    Each extension is optional (a missing compiler is no install failure); if any of them
    did not build, the others are removed too, so that the meter runs interpreted as a whole
    rather than half compiled (or with extensions of an older source).
    """

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1

    def run(self):
        self._built = set()
        super().run()
        if all(ext.name in self._built for ext in self.extensions):
            return
        for ext in self.extensions:             # leave no part (nor an older build) behind
            path = self.get_ext_fullpath(ext.name)
            if os.path.exists(path):
                os.remove(path)
        print("setup.py: the meter did not compile (%d of %d modules failed): it runs "
              "interpreted" % (len(self.extensions) - len(self._built), len(self.extensions)),
              file=sys.stderr)

    def build_extension(self, ext):
        super().build_extension(ext)            # raises if it failed (then skipped: optional)
        self._built.add(ext.name)


VERSION = re.search(r'__version__ = "([^"]+)"',
                    (HERE / "pathspider" / "version.py").read_text()).group(1)

setup(
    name="pathspider",
    version=VERSION,
    description="A pluggable framework for A/B measurements of Internet path transparency",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="GPL-2.0-or-later",
    python_requires=">=3.11",
    packages=find_packages(include=["pathspider", "pathspider.*"]),
    include_package_data=True,
    ext_modules=meter_extensions(),
    cmdclass={"build_ext": BuildMeter},
    install_requires=[
        "straight.plugin>=1.5",
        "pyroute2>=0.7",
        "dnspython>=2.3",
        "pcapy-ng>=1.0.9",
        "h2>=4.1",
        "cryptography>=41",
        "tqdm>=4.66",
        "matplotlib>=3.6",
    ],
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6", "setuptools", "wheel"],
        # pathspider campaign (docs/campaign.md): Celery with the Redis broker and backend
        "campaign": ["celery[redis]>=5.3"],
    },
    entry_points={
        "console_scripts": ["pathspider = pathspider.cli.main:handle_args_wrapper"],
        # The root marker and the lab fixtures in any tree, without a conftest. Named after
        # its module, so that listing the module again (-p, pytest_plugins) is a no-op, not a
        # "registered twice" error; -p no:pathspider.testing.pytest_plugin turns it off.
        "pytest11": ["pathspider.testing.pytest_plugin = pathspider.testing.pytest_plugin"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Operating System :: POSIX :: Linux",
        "Topic :: System :: Networking :: Monitoring",
    ],
)
