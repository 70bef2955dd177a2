"""Which measurement plugins this host has, and whether a plugin accepts given options.

Both use pathspider's own command-line parser, so a campaign accepts exactly what a local run
accepts: a *measurement* is a sub-command whose parser names a spider (utilities such as
``lab`` or ``campaign`` do not, so a message can never reach them).
"""
import contextlib
import io

from pathspider.campaign.messages import MessageError


def _parser():
    from pathspider.cli.main import build_parser
    parser, _ = build_parser()
    return parser


def _subcommands(parser):
    for action in parser._actions:                  # argparse keeps sub-parsers here
        if getattr(action, "choices", None) and hasattr(action, "add_parser"):
            return action.choices
    return {}


def measurement_plugins(parser=None):
    """``{command: plugin class}`` of the measurement plugins discovered on this host."""
    parser = parser or _parser()
    return {name: sub.get_default("spider") for name, sub in _subcommands(parser).items()
            if sub.get_default("spider") is not None and sub.get_default("func") is None}


def check_plugin_options(plugin, options, parser=None):
    """Raise :class:`MessageError` unless ``plugin`` is a measurement here and its parser
    accepts ``options``; return the plugin class."""
    parser = parser or _parser()
    plugins = measurement_plugins(parser)
    if plugin not in plugins:
        raise MessageError(f"no measurement plugin named {plugin!r} (available: "
                           f"{', '.join(sorted(plugins))})")
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args([plugin, *options])
    except SystemExit:
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        raise MessageError(f"the {plugin} plugin refuses the options {options!r}: "
                           f"{lines[-1] if lines else 'bad options'}") from None
    except Exception as exc:                        # a CommandLineError and the like
        raise MessageError(f"the {plugin} plugin refuses the options {options!r}: "
                           f"{exc}") from None
    return plugins[plugin]
