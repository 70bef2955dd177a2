"""Stop signals held during start-up: taken over by a run, or delivered again to a utility.

Each case runs in a fresh interpreter, since it changes signal handlers and signals itself.
"""

import signal
import subprocess
import sys
import textwrap


def _python(code):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60)


def test_a_signal_while_holding_is_recorded_not_acted_on():
    done = _python("""
        import os, signal
        from pathspider.engine import held_signals
        held_signals.hold()
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGHUP)
        assert held_signals.holding()
        print(held_signals.take())
        assert not held_signals.holding()
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str([int(signal.SIGTERM), int(signal.SIGHUP)])


def test_release_delivers_the_held_signal_to_the_previous_handler():
    done = _python("""
        import os, signal
        from pathspider.engine import held_signals
        held_signals.hold()
        os.kill(os.getpid(), signal.SIGTERM)
        print("still here", flush=True)
        held_signals.release()
        print("not reached", flush=True)
    """)
    assert done.stdout.split("\n")[0] == "still here"
    assert "not reached" not in done.stdout
    assert done.returncode == -signal.SIGTERM


def test_release_without_signals_changes_nothing_else():
    done = _python("""
        import signal
        from pathspider.engine import held_signals
        held_signals.hold()
        held_signals.release()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        print("ok")
    """)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_a_utility_command_still_dies_of_sigterm_held_at_start_up(tmp_path):
    """`pathspider summary` gets SIGTERM before it runs: it ends by that signal, as it would
    without the hold."""
    results = tmp_path / "results.ndjson"
    results.write_text("")
    done = _python(f"""
        import os, signal, sys
        from pathspider.cli import main
        main.held_signals.hold()
        os.kill(os.getpid(), signal.SIGTERM)
        sys.argv = ["pathspider", "summary", {str(results)!r}]
        main.handle_args_wrapper()
    """)
    assert done.returncode == -signal.SIGTERM, (done.returncode, done.stderr)
