# C types for udp.py when it is compiled (Cython, pure-Python mode; see setup.py).
from pathspider.observer.dissector cimport UDP

cpdef bint udp_zero_checksum(dict rec, UDP udp, bint rev) except -1
