# C types for basic.py when it is compiled (Cython, pure-Python mode; see setup.py).
from pathspider.observer.dissector cimport _IPView

cpdef bint basic_flow(dict rec, ip) except -1
cpdef bint basic_count(dict rec, _IPView ip, bint rev) except -1
