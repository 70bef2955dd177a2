"""Shared pytest configuration of pathspider's own tests.

The ``root`` marker and the lab fixtures (``lab``, ``lab_client_state``, ``lab_netem``) come
from pathspider's pytest plugin, :mod:`pathspider.testing.pytest_plugin`, which the installed
package registers through its ``pytest11`` entry point, named after the module: pytest has
loaded it before it reads this file, and the line below is then a no-op (pytest skips a
plugin name it already has, so nothing is registered twice). It loads the plugin only when
the entry point did not (a checkout used without ``pip install -e .``, or
``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` set); ``-p no:pathspider.testing.pytest_plugin`` keeps it
off either way.
"""
pytest_plugins = ["pathspider.testing.pytest_plugin"]
