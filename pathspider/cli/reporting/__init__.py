"""The parts of ``pathspider report`` and ``pathspider export``: counting a run's outcomes per
group (:mod:`.tally`), plotting them (:mod:`.plots`), the HTML page and its CSV
(:mod:`.page`), the run's metadata file (:mod:`.runinfo`) and the Path Transparency
Observatory's observation format (:mod:`.pto`). The commands are :mod:`pathspider.cli.report`
and :mod:`pathspider.cli.export`; reading results is :mod:`pathspider.cli.results`.
"""
