"""Names in the lab's DNS zone (``lab.test``) and the addresses they stand for.

Pure functions, shared by the DNS server (:mod:`pathspider.lab.dnsd`) and by target generation,
so that every hostname a target list carries is one the lab DNS resolves to that target.

- ``t<n>.<class>.lab.test``: host ``n`` (1..254) of an impairment class (A and AAAA),
- ``<class>.lab.test``: host 1 of that class,
- ``lab.test`` and ``www.lab.test``: host 1 of ``clean``,
- ``dns.lab.test`` and ``ns.lab.test``: the lab DNS server.
"""
from . import plan

OK, NODATA, NXDOMAIN, REFUSED = "ok", "nodata", "nxdomain", "refused"


def hostname(cls, host):
    """The DNS name of host number ``host`` in impairment class ``cls``."""
    return f"t{host}.{cls}.{plan.DOMAIN}"


def _target(cls, host):
    return {4: plan.target_address(cls, host, 4), 6: plan.target_address(cls, host, 6)}


def _lookup_labels(labels):
    """Addresses (by family) for the labels left of the zone apex, or None if no such name."""
    if not labels or labels == ["www"]:
        return _target("clean", 1)
    if labels in (["dns"], ["ns"]):
        return {4: plan.DNS_V4, 6: plan.DNS_V6}
    if len(labels) == 1 and labels[0] in plan.CLASSES:
        return _target(labels[0], 1)
    if len(labels) == 2 and labels[1] in plan.CLASSES and labels[0][:1] == "t":
        num = labels[0][1:]
        if num.isdigit() and num == str(int(num)) and int(num) in plan.HOSTS:
            return _target(labels[1], int(num))
    return None


def lookup(qname, family):
    """Resolve ``qname`` for IP ``family`` (4 for A, 6 for AAAA).

    Returns ``(status, addresses)`` where status is OK (one address), NODATA (the name exists
    but family is None, i.e. another record type), NXDOMAIN (no such name in the zone) or
    REFUSED (not in the lab zone at all).
    """
    name = qname.lower().rstrip(".")
    if name != plan.DOMAIN and not name.endswith("." + plan.DOMAIN):
        return REFUSED, []
    labels = name[:-len(plan.DOMAIN)].rstrip(".").split(".") if name != plan.DOMAIN else []
    found = _lookup_labels(labels)
    if found is None:
        return NXDOMAIN, []
    if family not in (4, 6):
        return NODATA, []
    return OK, [found[family]]
