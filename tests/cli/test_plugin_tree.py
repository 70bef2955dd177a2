"""The plugin guide's workflow as a user follows it: a plugin tree of its own, outside the
repository, run with ``PYTHONPATH=.`` and the installed console script; its plugins and the
bundled ones are listed and run side by side."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONSOLE = Path(sys.executable).parent / "pathspider"

TREE_PLUGIN = textwrap.dedent('''
    import collections
    from pathspider.base import DesynchronizedSpider, PluggableSpider, NO_FLOW
    from pathspider.observer.dummy import Observer

    Rec = collections.namedtuple("Rec", ["ip", "port", "rport", "config"])

    class TreePlug(DesynchronizedSpider, PluggableSpider):
        def connect(self, job, pcs, config):
            return None
        def post_connect(self, job, conn, pcs, config):
            return Rec(job[0], 0, job[1], config)
        def create_observer(self):
            return Observer()
        def merge(self, flow, res):
            return dict(res._asdict(), observed=flow is not NO_FLOW)    # returned, as the guide says
        @staticmethod
        def register_args(subparsers):
            subparsers.add_parser("treeplug", help="a plugin of a tree of its own").set_defaults(
                spider=TreePlug)
''')


@pytest.fixture
def tree(tmp_path):
    """A plugin tree outside the repository, laid out as docs/plugindev.md says."""
    root = tmp_path / "my-plugin"
    plugins = root / "pathspider" / "plugins"
    plugins.mkdir(parents=True)
    for init in (root / "pathspider" / "__init__.py", plugins / "__init__.py"):
        init.write_text("from pkgutil import extend_path\n"
                        "__path__ = extend_path(__path__, __name__)\n")
    (plugins / "treeplug.py").write_text(TREE_PLUGIN)
    assert REPO not in root.parents
    return root


def user_env():
    """The environment of a user in the tree: PYTHONPATH=. and nothing of the repository."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = "."
    return env


def test_the_tree_sees_its_plugins_and_the_bundled_ones(tree):
    proc = subprocess.run([str(CONSOLE), "--help"], cwd=tree, env=user_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for command in ("treeplug", "ecn", "tfo", "dscp"):
        assert f"    {command} " in proc.stdout, (command, proc.stdout)
    imports = subprocess.run([sys.executable, "-c", "import pathspider.plugins.dscp, "
                              "pathspider.plugins.treeplug"], cwd=tree, env=user_env(),
                             capture_output=True, text=True, timeout=60)
    assert imports.returncode == 0, imports.stderr


def test_the_tree_plugin_runs_and_a_returned_record_is_written(tree):
    proc = subprocess.run([str(CONSOLE), "-i", "lo", "--allow", "treeplug"], cwd=tree,
                          env=user_env(),
                          input="198.18.64.1,80,h,1\n198.18.64.2,80,h,2\n",
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    records = proc.stdout.splitlines()
    assert len(records) == 4 and all('"observed": false' in r for r in records), proc.stdout


SIMULATED_HOOK = textwrap.dedent('''
    import importlib.abc, importlib.util, os, sys
    REPO, TREE = sys.argv[1], sys.argv[2]
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__]
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != REPO]
    sys.path.insert(0, TREE)

    class EditableHook(importlib.abc.MetaPathFinder):
        """What setuptools' default editable install does: map the package by an import hook,
        not by a sys.path entry."""
        def find_spec(self, name, path, target=None):
            if not name.startswith("pathspider."):
                return None
            base = os.path.join(REPO, *name.split("."))
            if os.path.exists(base + ".py"):
                return importlib.util.spec_from_file_location(name, base + ".py")
            if os.path.exists(os.path.join(base, "__init__.py")):
                return importlib.util.spec_from_file_location(
                    name, os.path.join(base, "__init__.py"), submodule_search_locations=[base])
            return None

    sys.meta_path.append(EditableHook())
    from pathspider.engine.discovery import load_plugins
    plugins, errors = load_plugins()
    print(" ".join(sorted(p.__name__ for p in plugins)))
''')


def test_an_installation_reached_through_an_import_hook_still_lists_its_plugins(tree):
    proc = subprocess.run([sys.executable, "-c", SIMULATED_HOOK, str(REPO), str(tree)],
                          cwd=tree, capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stderr
    assert set(proc.stdout.split()) >= {"ECN", "DSCP", "TFO", "TreePlug"}, proc.stdout


@pytest.mark.root
def test_a_bundled_plugin_runs_from_the_tree(tree, tmp_path):
    """``ecn`` (which switches a sysctl) from the tree, in a network namespace of its own
    with a local HTTP server on its loopback."""
    ns = f"pstree-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    server = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m",
                                   "http.server", "--bind", "127.0.0.1", "8080"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  cwd=tmp_path)
        proc = subprocess.run(["ip", "netns", "exec", ns, str(CONSOLE), "-i", "lo", "--allow",
                               "ecn", "--timeout", "3"], cwd=tree, env=user_env(),
                              input="127.0.0.1,8080,,1\n", capture_output=True, text=True,
                              timeout=120)
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "netns", "del", ns], check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = proc.stdout.splitlines()
    assert len(records) == 2 and all('"observed": true' in r for r in records), proc.stdout
