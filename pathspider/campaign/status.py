"""What a campaign has done so far: per vantage, chunks stored / pending / failed, records,
and the agents seen (those that stored a chunk; with a broker, also those answering now)."""
import logging

log = logging.getLogger("pathspider.campaign.status")


def summarise(journal, live_agents=None):
    """``{"id", "plugin", "status", "targets", "chunks", "vantages": {name: {...}}}``.

    ``live_agents``: ``{vantage: [worker names]}`` from :func:`live_agents`, or None."""
    out = {"id": journal["id"], "plugin": journal["plugin"], "options": journal["options"],
           "status": journal.get("status"), "targets": journal["targets"],
           "chunks": journal["chunk_count"], "vantages": {}}
    for vantage in journal["vantages"]:
        entries = journal["chunks"][vantage].values()
        states = [e["state"] for e in entries]
        out["vantages"][vantage] = {
            "chunks": len(states), "stored": states.count("stored"),
            "pending": states.count("submitted") + states.count("new"),
            "failed": states.count("failed"),
            "records": sum(e.get("records") or 0 for e in entries if e["state"] == "stored"),
            "agents_seen": sorted({e["agent"] for e in entries if e.get("agent")}),
        }
        if live_agents is not None:
            out["vantages"][vantage]["agents_live"] = sorted(live_agents.get(vantage, []))
    return out


def format_text(summary):
    """The summary as a few lines of text."""
    lines = [f"campaign {summary['id']}: {summary['plugin']} {' '.join(summary['options'])}"
             f" — {summary['status']}; {summary['targets']} targets in {summary['chunks']} "
             "chunks"]
    for vantage, v in summary["vantages"].items():
        line = (f"  {vantage}: {v['stored']}/{v['chunks']} chunks stored, {v['pending']} "
                f"pending, {v['failed']} failed, {v['records']} records; agents seen: "
                f"{', '.join(v['agents_seen']) or 'none'}")
        if "agents_live" in v:
            line += f"; answering now: {', '.join(v['agents_live']) or 'none'}"
        lines.append(line)
    return "\n".join(lines)


def live_agents(app, timeout=1.0):
    """``{vantage: [worker name]}`` of the agents that answer a broadcast within ``timeout``."""
    from pathspider.campaign.names import vantage_of_queue
    found = {}
    try:
        replies = app.control.inspect(timeout=timeout).active_queues() or {}
    except Exception as exc:                     # the broker is the network: anything goes
        log.warning("could not ask the agents: %s", exc)
        return found
    for worker, queues in replies.items():
        for queue in queues or ():
            vantage = vantage_of_queue(queue.get("name") if isinstance(queue, dict) else None)
            if vantage:
                found.setdefault(vantage, []).append(worker)
    return found
