"""Finding plugins: every module of the ``pathspider.plugins`` namespace package.

Plugins are the subclasses of :class:`pathspider.base.PluggableSpider` found in those modules,
as straight.plugin's ``load("pathspider.plugins", subclasses=PluggableSpider)`` found them in
1.0. The namespace package spans every directory on ``sys.path`` that has a
``pathspider/plugins/`` folder, so third-party plugins on ``PYTHONPATH`` or installed as their
own distributions are found too.

Unlike straight.plugin, a module that fails to import is not dropped silently: it is reported
with its error, and the other plugins still load. straight.plugin itself imports the ``imp``
module that Python 3.12 removed; it is used where it imports, and this module's own
pkgutil/importlib scan (which always runs, to see import errors) gives the same result where it
does not.
"""

import importlib
import inspect
import logging
import os
import pkgutil
import warnings

log = logging.getLogger("pathspider.engine.discovery")

NAMESPACE = "pathspider.plugins"


class PluginLoadError:
    """A plugin module that could not be imported: its name and the reason."""

    def __init__(self, module, error):
        self.module = module
        self.error = error

    def __str__(self):
        return f"plugin module {self.module!r} failed to load: {self.error}"


def _describe(exc):
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


#: The installed package's own directory (``.../pathspider``), whatever way it was imported.
OWN_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def join_installed_portion():
    """Make ``pathspider`` and ``pathspider.plugins`` include this installation's directories.

    Both are pkgutil namespace packages: the first ``pathspider`` package found on ``sys.path``
    wins, and ``extend_path`` adds every other ``sys.path`` entry with a ``pathspider`` folder.
    With ``PYTHONPATH=.`` in a plugin tree (the 1.0 guide's workflow) the tree's package comes
    first; an installation that is not a ``sys.path`` entry (setuptools' default editable
    install maps the package through an import hook) is then missing from ``__path__``, and
    the bundled plugins with it. This adds it, once; it changes nothing in other setups.
    """
    import pathspider
    plugins = importlib.import_module(NAMESPACE)
    for package, directory in ((pathspider, OWN_PACKAGE_DIR),
                               (plugins, os.path.join(OWN_PACKAGE_DIR, "plugins"))):
        path = package.__path__
        if os.path.isdir(directory) and directory not in map(os.path.abspath, path):
            path.append(directory)


def _plugin_module_names():
    join_installed_portion()
    package = importlib.import_module(NAMESPACE)
    names = sorted({info.name for info in pkgutil.iter_modules(package.__path__)})
    return [f"{NAMESPACE}.{name}" for name in names if not name.startswith("_")]


def _classes_in(module, base):
    return [obj for obj in vars(module).values()
            if inspect.isclass(obj) and issubclass(obj, base) and obj is not base]


def _straight_plugin_classes(base):
    """Classes straight.plugin finds, or [] where it cannot run (no ``imp`` module)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from straight.plugin import load
    except ImportError:
        return []
    try:
        return list(load(NAMESPACE, subclasses=base))
    except Exception as exc:            # its failure must not hide the other plugins
        log.debug("straight.plugin failed: %s", _describe(exc))
        return []


def load_plugins():
    """Import every plugin module; return ``(plugin_classes, errors)``.

    ``plugin_classes`` is in name order without duplicates; ``errors`` is a list of
    :class:`PluginLoadError` for modules that raised on import.
    """
    from pathspider.engine.spider import PluggableSpider

    found, errors = [], []
    for name in _plugin_module_names():
        try:
            module = importlib.import_module(name)
        except Exception as exc:        # any error in third-party code must be reported
            errors.append(PluginLoadError(name.rsplit(".", 1)[1], _describe(exc)))
            continue
        found.extend(_classes_in(module, PluggableSpider))
    found.extend(_straight_plugin_classes(PluggableSpider))
    unique = list(dict.fromkeys(found))
    unique.sort(key=lambda cls: (cls.__module__, cls.__name__))
    return unique, errors
