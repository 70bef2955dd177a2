# C types for tfo.py when it is compiled (Cython, pure-Python mode; see setup.py).
cimport cython
from pathspider.observer.dissector cimport TCP

@cython.locals(flags=int)
cpdef bint tfo_packet(dict rec, TCP tcp, bint rev) except -1
