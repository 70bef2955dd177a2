# C types for flowtable.py when it is compiled (Cython, pure-Python mode). The .py file is the
# only source: this file adds types to its names and nothing else. Methods declared ``cdef``
# here are C calls between the table's own methods (Python code cannot call them when compiled;
# the tests call only the public ones).

cimport cython
from pathspider.observer.dissector cimport _IPView, IP4, IP6, TCP, UDP
from pathspider.observer.native cimport call_ip, call_tcp, call_udp

cdef int ACTIVE, EXPIRING, IGNORED, GONE      # flow states
cdef int _TCP, _UDP

cdef class Flow:
    cdef public dict rec
    cdef public int state
    cdef public dict tab
    cdef public bytes fkey, rkey
    cdef public long long seq
    cdef public object due, isn
    cdef public bint isn_rev

@cython.locals(flow=Flow)
cdef Flow _flow(dict rec, int state, dict tab, bytes fkey, bytes rkey, long long seq,
               object isn)

@cython.locals(n=Py_ssize_t, a=Py_ssize_t, k="const unsigned char *")
cpdef bytes reverse_key(bytes key)

cdef class Counters:
    cdef public long long packets, short, nonip, malformed, flows, ignored, emitted
    cdef public long long chain_errors, icmp_linked, fragments, slowpath, syn_restarts

cdef class FlowTable:
    cdef public object link
    cdef public int linktype
    cdef public bint ethernet, plain_path
    cdef public tuple new_flow_chain, ip4_chain, ip6_chain, icmp4_chain, icmp6_chain
    cdef public tuple tcp_chain, udp_chain, l4_chain
    cdef tuple _ip4_steps, _ip6_steps, _tcp_steps, _udp_steps
    cdef public object idle_timeout, expiry_timeout
    cdef public list tabs, heap, emitted
    cdef public dict bins, fragmap
    cdef public double next_tick
    cdef public object clock
    cdef public Counters ct
    cdef TCP _tcpv
    cdef UDP _udpv
    cdef IP4 _v4t, _v4u
    cdef IP6 _v6t, _v6u
    cdef long long _seq
    cdef int _errors_logged

    cdef _schedule(self, object t, Flow flow)
    cdef _unschedule(self, Flow flow)

    @cython.locals(clock=object, heap=list, bins=dict, flow=Flow)
    cpdef tick(self, ts)

    @cython.locals(state=int)
    cdef _due(self, Flow flow, object t)

    cdef _complete(self, Flow flow, double now)
    @cython.locals(tab=dict)
    cdef _forget(self, Flow flow)
    cdef _emit(self, Flow flow)

    @cython.locals(fields="const unsigned int[:]", i=Py_ssize_t, n=Py_ssize_t,
                   sec="unsigned int", usec="unsigned int", off=Py_ssize_t,
                   caplen=Py_ssize_t, end=Py_ssize_t, nbytes=Py_ssize_t, ts=double,
                   plain=bint, ct=Counters)
    cpdef process(self, pkts, meta)

    @cython.locals(p="const unsigned char *", ipoff=Py_ssize_t, etype=int, vb=int, v4=bint,
                   size=int, proto=int, tc=int, l4=Py_ssize_t, key_at=Py_ssize_t,
                   ipend=Py_ssize_t, doff=int, hlen=Py_ssize_t, flags=int, syn=object,
                   tcp=TCP, udp=UDP, ip=_IPView)
    cdef bint _plain_packet(self, pkts, Py_ssize_t off, Py_ssize_t end, double ts) except -1

    @cython.locals(ct=Counters)
    cdef _general_packet(self, pkts, Py_ssize_t off, Py_ssize_t end, double ts)

    @cython.locals(rec=dict, flow=Flow, rev=bint, ok=bint)
    cdef _dispatch(self, _IPView ip, dict tab, bytes key, object q, bint quoted, object syn,
                   double ts)

    @cython.locals(rec=dict, flow=Flow, keep=bint)
    cdef Flow _new_flow(self, _IPView ip, double ts, dict tab, bytes key, bint quoted,
                        object isn)

    cdef bint _keep(self, dict rec, _IPView ip) except -1
    cdef bint _fresh_syn(self, Flow flow, bint rev, object seq) except -1
