"""Inline forms of chain functions, for the Observer's fast path.

The Observer calls chain functions as ``fn(rec, header, rev)`` (the 1.0 API). For the common
packets (plain TCP and UDP over IPv4 without options or fragmentation and IPv6 without
extension headers) the flow table pastes the per-packet chains into a copy of its packet loop
(:func:`pathspider.observer.flowtable.specialise_process`, or one runner function per chain pair,
:func:`pathspider.observer.flowtable.compile_runner`), and a library function that carries a
:class:`FastPath` form is pasted in as statements instead of being called: a Python call and
the header view attribute reads cost more than most chain bodies. Functions without a form
(plugins' own functions) are called as usual, with the header views; both mix freely and the
1.0 semantics hold (the first falsy result stops the packet's chains and completes the flow,
an exception is counted and logged with the function's name). Packets off the fast path
(ICMP, fragments, options, VLAN tags...) always call the functions.

Why: on CPython 3.11 a call of a chain function costs about as much as its body, and reading
view attributes (properties, and slot reads that see two view classes) more than that; with
``basic_count`` and the TCP and ECN chains called per packet, the chains took about a third
of the Observer's time (``benchmarks/observer.py``).

A form is written over these local names, nothing else:

``rec``, ``rev``
    the flow record and the direction, as passed to the function;
``size``
    ``ip.size`` (IP length from the header);
``tc``
    ``ip.traffic_class``;
``flags``
    ``tcp.flags`` (12 bits); only in the TCP chain, so a form that uses it is inlined only
    there (and called normally anywhere else).

A form for a ``new_flow`` chain function (``chain="new_flow"``) reads ``rec`` and ``ip`` (the
IP header view of the flow's first packet) instead; it is pasted into the flow table's
composed new_flow chain, for every packet that starts a flow.

``code`` is a block of statements (may be empty), ``result`` an expression for the function's
return value, evaluated after ``code``. Names the form needs from its module go in ``env``; its
own temporaries must start with the function's name (``tcp_handshake_rs``) so that forms
pasted one after the other never share a variable. The form must do exactly what the function
does for such a packet, in the same order (the same record writes, the same exceptions): the
tests run every form against its function (``tests/observer``).
"""

import dis
import textwrap

__all__ = ["FastPath", "fast_path", "FAST_NAMES", "NEW_FLOW_NAMES"]

#: Names a per-packet form may read (``flags`` only in the TCP chain).
FAST_NAMES = ("rec", "rev", "size", "tc", "flags")
#: Names a new_flow form may read.
NEW_FLOW_NAMES = ("rec", "ip")


class FastPath:
    """The inline form of one chain function (see the module docstring)."""

    __slots__ = ("code", "result", "uses", "env", "chain", "temporaries", "globals_read")

    def __init__(self, code="", result="True", uses=(), env=None, chain="packet"):
        if chain not in ("packet", "new_flow"):
            raise ValueError("chain must be 'packet' or 'new_flow', not %r" % (chain,))
        self.code = textwrap.dedent(code).strip("\n")
        self.result = result
        self.uses = frozenset(uses)
        self.env = dict(env or {})
        self.chain = chain
        # the local names the form assigns (compiling it also checks its syntax early)
        names = FAST_NAMES if chain == "packet" else NEW_FLOW_NAMES
        body = (self.code + "\n" if self.code else "") + "return " + result
        source = "def form(%s):\n%s\n" % (", ".join(names), textwrap.indent(body, "    "))
        namespace = {}
        exec(compile(source, "<fast path form>", "exec"), namespace)
        code = namespace["form"].__code__
        self.temporaries = frozenset(code.co_varnames) - set(names)
        self.globals_read = frozenset(i.argval for i in dis.get_instructions(code)
                                      if i.opname == "LOAD_GLOBAL")

    def __repr__(self):
        return "FastPath(uses=%s, result=%r)" % (sorted(self.uses), self.result)


def fast_path(code="", result="True", uses=(), env=None, chain="packet"):
    """Decorator: attach a :class:`FastPath` form to a chain function (``fn.fast_path``).

    ``uses`` lists the names of :data:`FAST_NAMES` (or :data:`NEW_FLOW_NAMES` for
    ``chain="new_flow"``) beyond ``rec`` and ``rev`` that the form reads; the flow table
    inlines it only where all of them are available, and only in a chain of its kind.
    """
    form = FastPath(code, result, uses, env, chain)

    def attach(fn):
        fn.fast_path = form
        return fn
    return attach
