"""PATHspider 1.0's console entry point; the command line lives in :mod:`pathspider.cli.main`.

``python -m pathspider.run`` works as in 1.0.
"""

from pathspider.cli.main import handle_args, handle_args_wrapper

__all__ = ["handle_args", "handle_args_wrapper"]

if __name__ == "__main__":
    handle_args_wrapper()
