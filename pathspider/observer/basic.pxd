# C types for basic.py when it is compiled (Cython, pure-Python mode; see setup.py).
cimport cython
from pathspider.observer.dissector cimport _IPView, view_endpoints

@cython.locals(view=_IPView)
cpdef bint basic_flow(dict rec, ip) except -1
cpdef bint basic_count(dict rec, _IPView ip, bint rev) except -1
