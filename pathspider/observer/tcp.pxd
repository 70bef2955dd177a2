cimport cython

# C types for tcp.py when it is compiled (Cython, pure-Python mode; see setup.py): the
# per-packet functions take the dissector's TCP view, whose fields are C fields.
from pathspider.observer.dissector cimport _IPView, TCP
from pathspider.observer.icmp cimport is_icmp_error

cdef int _SYN, _ACK, _FIN, _RST, _FIN_RST

cpdef bint tcp_setup(dict rec, ip) except -1

@cython.locals(flags=int)
cpdef bint tcp_handshake(dict rec, TCP tcp, bint rev) except -1

@cython.locals(flags=int)
cpdef bint tcp_complete(dict rec, TCP tcp, bint rev) except -1

cpdef object syn_or_data(_IPView ip)
