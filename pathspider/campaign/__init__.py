"""Multi-vantage campaigns: one target list measured from several vantage points at once.

A campaign runs on Celery with a Redis broker and result backend (docs/campaign.md). Each
vantage point runs an *agent* (:mod:`pathspider.campaign.agent`), a Celery worker that consumes
only its vantage's queue and measures each chunk of targets with the same engine as a local run
(a ``python -m pathspider.run`` subprocess, :mod:`pathspider.campaign.runner`). The submitter
(:mod:`pathspider.campaign.submit`) shards the list (:mod:`pathspider.campaign.sharding`),
sends one task per chunk and vantage, and stores each chunk's records atomically
(:mod:`pathspider.campaign.store`); :mod:`pathspider.campaign.analyse` then says, per target
and condition, whether an effect sits near the target or near one vantage.

Task messages carry data only (JSON, never pickle), validated by
:mod:`pathspider.campaign.messages`; the agent builds the command line itself.
"""
