"""How far a run is, on stderr: a live line on a terminal, a log line every N seconds otherwise.

``--progress`` (the default) shows, while a run measures: jobs done (of the total when it is
known: a regular input file's lines are counted up front, and once the whole list is read the
total is exact; for a pipe or terminal only the count), the rate over the last half minute,
the time left, the failures so far (plugin errors, connections that failed or timed out),
packets the capture dropped, records written and, for a resumed run, the targets skipped
because the output already has them. On a terminal it is one live line (tqdm) redrawn twice
a second, with log messages printed above it; otherwise (a file, a pipe, a journal) it is one
``pathspider.engine.progress`` log line every ``--progress-interval`` seconds (10 by
default). ``--no-progress`` shows nothing but the summary line at the end.

Nothing is counted for the progress on a job's path: the engine's counters exist anyway (jobs
read, jobs completed, plugin errors, records written...) and one ticker thread reads them,
blocking on the run's condition with a timeout between two looks; once every job is finished
it shows the final state and ends. Capture drops come from the Observer
process, which sends its counters along with its flow batches (see
:mod:`pathspider.observer.process`).
"""

import collections
import logging
import os
import stat
import sys
import threading
import time

log = logging.getLogger("pathspider.engine.progress")

#: Seconds between two redraws of the live line.
BAR_SECONDS = 0.5
#: Default seconds between two progress log lines (``--progress-interval``).
LOG_SECONDS = 10.0
#: The rate is measured over the last this many seconds (at least two looks).
RATE_WINDOW = 30.0
#: The live line with a known total, and without.
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {line}"
COUNT_FORMAT = "{desc}: {line}"
#: Columns of the live line when the terminal does not say (a width of 0, e.g. a new pty).
FALLBACK_WIDTH = 100
#: Bytes read at a time when counting the input's lines.
CHUNK = 1 << 20

#: ``spdr_state`` values of a connection that failed (refused, unreachable) or timed out:
#: :class:`pathspider.constants.Conn` ``FAILED`` and ``TIMEOUT``, which the forging model's
#: states share.
_FAILED_STATES = (1, 2)


def failed_connections(results):
    """How many of a batch of plugin results (records of the bundled plugins, 1.0
    ``Connection`` tuples, forged-probe dicts) are connections that failed or timed out.
    Called once per batch by the engine; results it cannot read count as not failed."""
    failed = 0
    for res in results:
        state = getattr(res, "spdr_state", None)
        if state is None:
            if type(res) is dict:
                state = res.get("spdr_state")
            else:
                state = getattr(getattr(res, "state", None), "value", None)
        if state in _FAILED_STATES:
            failed += 1
    return failed


def choose_mode(enabled, stream=None):
    """``"bar"`` (a live line), ``"log"`` (periodic log lines) or ``"off"``: a live line
    when ``stream`` (stderr) is a terminal."""
    if not enabled:
        return "off"
    stream = stream if stream is not None else sys.stderr
    try:
        return "bar" if stream.isatty() else "log"
    except (AttributeError, ValueError):
        return "log"


def count_lines(path, stop=None):
    """The number of lines of the regular file ``path`` (a last line without newline
    counts), or None for anything else or an error; ``stop`` (an Event) ends early (None)."""
    try:
        with open(path, "rb") as stream:
            if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                return None
            lines, last = 0, b"\n"
            while True:
                if stop is not None and stop.is_set():
                    return None
                chunk = stream.read(CHUNK)
                if not chunk:
                    break
                lines += chunk.count(b"\n")
                last = chunk[-1:]
            return lines + (last != b"\n")
    except OSError:
        return None


class Rate:
    """Jobs per second over the last ``window`` seconds, from samples of a growing count."""

    def __init__(self, window=RATE_WINDOW):
        self.window = window
        self._samples = collections.deque()

    def add(self, now, count):
        """Add a sample; returns the rate (None until two samples a moment apart exist)."""
        samples = self._samples
        samples.append((now, count))
        while len(samples) > 2 and now - samples[1][0] >= self.window:
            samples.popleft()
        then, before = samples[0]
        if now - then < 0.2:
            return None
        return (count - before) / (now - then)


def duration(seconds):
    """``42s``, ``3m 05s``, ``2h 07m``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


class Status:
    """One look at the counters: what the line shows (see :meth:`Progress.look`)."""

    def __init__(self, counters, total_lines, rate):
        self.c = counters
        self.rate = rate
        done = counters["done"] + counters["skipped"]
        if counters["reading_done"]:
            total = counters["read"]
        elif total_lines is not None:
            total = max(total_lines - counters["bad"], counters["read"], done)
        else:
            total = None
        self.done = done
        self.total = total
        left = None if total is None else max(0, total - done - counters["discarded"])
        self.eta = left / rate if left is not None and rate else None

    def text(self):
        """The log line."""
        if self.total is not None:
            share = 100.0 * self.done / self.total if self.total else 100.0
            head = f"{self.done:,} of {self.total:,} jobs ({share:.0f} %)"
        else:
            head = f"{self.done:,} jobs done"
        parts = [head, f"{self.rate:,.0f} jobs/s" if self.rate is not None else "rate unknown"]
        if self.eta is not None:
            parts.append(f"ETA {duration(self.eta)}")
        return "; ".join([", ".join(parts), self.failures(), self.extra()])

    def failures(self):
        c = self.c
        drops = "capture drops unknown" if c["drops"] is None else f"{c['drops']:,} " \
            "packets dropped by the capture"
        return (f"{c['plugin_errors']:,} plugin errors, {c['failed_connections']:,} "
                f"connections failed, {drops}")

    def extra(self):
        c = self.c
        text = f"{c['records']:,} records written"
        if c["skipped"]:
            text += f", {c['skipped']:,} jobs skipped (already in the output)"
        return text

    def postfix(self):
        """The live line's text after the bar."""
        c = self.c
        total = f"/{self.total:,}" if self.total is not None else ""
        rate = f"{self.rate:,.0f} jobs/s" if self.rate is not None else "- jobs/s"
        eta = f" ETA {duration(self.eta)}" if self.eta is not None else ""
        drops = "?" if c["drops"] is None else f"{c['drops']:,}"
        skipped = f" skipped {c['skipped']:,}" if c["skipped"] else ""
        return (f"{self.done:,}{total} jobs {rate}{eta} | errors {c['plugin_errors']:,} "
                f"failed {c['failed_connections']:,} drops {drops}{skipped}")


class Progress:
    """The ticker: every ``interval`` seconds (``BAR_SECONDS`` for a live line) it reads
    ``counters()`` (a dict with ``read``, ``bad``, ``reading_done``, ``skipped``, ``done``,
    ``discarded``, ``plugin_errors``, ``failed_connections``, ``drops``, ``records``) and
    shows it. ``input_path``: the target list, whose lines are counted for the total when it
    is a regular file.

    With ``run_phase`` (the run's :class:`~pathspider.engine.lifecycle.RunPhase`) and
    ``jobs_finished`` (a predicate tested under its lock) the ticker waits on the run's
    condition instead of a plain timer: as soon as every job is finished (what is left is the
    Observer's flush and the last records) it shows the final state once and ends, closing a
    live line before the Observer process writes its last log lines to the same terminal.
    """

    def __init__(self, counters, mode, interval=LOG_SECONDS, input_path=None, label="run",
                 run_phase=None, jobs_finished=None):
        self.counters = counters
        self.run_phase = run_phase
        self.jobs_finished = jobs_finished
        self.mode = mode
        self.interval = BAR_SECONDS if mode == "bar" else max(0.1, float(interval))
        self.input_path = input_path
        self.label = label
        self.total_lines = None
        self._rate = Rate(max(RATE_WINDOW, 2.5 * self.interval))
        self._stop = threading.Event()
        self._thread = None
        self._bar = None
        self._redirect = None
        self.lines_logged = 0

    def start(self):
        """Start the ticker thread (nothing for mode ``off``)."""
        if self.mode == "off":
            return self
        if self.mode == "bar":
            self._open_bar()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Show the last state and stop; safe to call more than once."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        if self.run_phase is not None:
            self.run_phase.notify()
        thread.join(5)
        if self._bar is not None:
            self._show(self.look())
            self._close_bar()

    def look(self):
        """A :class:`Status` of the counters now."""
        counters = self.counters()
        rate = self._rate.add(time.monotonic(), counters["done"])
        return Status(counters, self.total_lines, rate)

    # ---- the ticker ---------------------------------------------------------------------------

    def _run(self):
        try:
            if self.input_path is not None:
                self.total_lines = count_lines(self.input_path, self._stop)
            self.look()                         # the rate's first sample
            while True:
                finished = self._wait(self.interval)
                if self._stop.is_set():
                    return
                self._show(self.look())
                if finished:
                    if self._bar is not None:
                        self._close_bar()
                    return
        except Exception:                       # progress must never end a run
            log.debug("the progress display failed", exc_info=True)

    def _wait(self, timeout):
        """Block up to ``timeout`` seconds; True once every job is finished."""
        if self.run_phase is None or self.jobs_finished is None:
            self._stop.wait(timeout)
            return False
        finished = self.jobs_finished
        stop = self._stop
        return bool(self.run_phase.wait_until(lambda: stop.is_set() or finished(), timeout)) \
            and not stop.is_set()

    def _show(self, status):
        if self._bar is not None:
            bar = self._bar
            bar.total = status.total
            bar.bar_format = BAR_FORMAT if status.total else COUNT_FORMAT
            bar.n = min(status.done, status.total) if status.total is not None else status.done
            bar.line = status.postfix()
            bar.refresh()
        else:
            log.info("progress: %s", status.text())
            self.lines_logged += 1

    def _open_bar(self):
        from tqdm.contrib.logging import logging_redirect_tqdm

        width = _terminal_width(sys.stderr)
        self._bar = _live_line()(total=None, file=sys.stderr, desc=self.label, leave=True,
                                 mininterval=0, bar_format=COUNT_FORMAT,
                                 dynamic_ncols=width is not None,
                                 ncols=None if width is not None else FALLBACK_WIDTH)
        self._redirect = logging_redirect_tqdm()
        self._redirect.__enter__()              # log messages go above the line

    def _close_bar(self):
        try:
            self._bar.close()
        finally:
            self._bar = None
            if self._redirect is not None:
                self._redirect.__exit__(None, None, None)
                self._redirect = None


def _terminal_width(stream):
    """The terminal's columns, or None when it does not tell (0)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns or None
    except (AttributeError, ValueError, OSError):
        return None


_LIVE_LINE = None


def _live_line():
    """tqdm with one more field for ``bar_format``, ``{line}``: the text after the bar (tqdm's
    own ``{postfix}`` starts with a comma). Made on first use: tqdm is imported only for a
    live line."""
    global _LIVE_LINE
    if _LIVE_LINE is None:
        from tqdm import tqdm

        class LiveLine(tqdm):
            monitor_interval = 0                # no monitor thread: the ticker redraws
            line = ""

            @property
            def format_dict(self):
                values = super().format_dict
                values["line"] = self.line
                return values

        _LIVE_LINE = LiveLine
    return _LIVE_LINE
