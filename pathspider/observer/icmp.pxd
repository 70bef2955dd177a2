# C types for icmp.py when it is compiled (Cython, pure-Python mode; see setup.py).
from pathspider.observer.dissector cimport _IPView

cpdef bint is_icmp_error(_IPView ip) except -1
