cimport cython

# C types for ecn.py when it is compiled (Cython, pure-Python mode; see setup.py).
from pathspider.observer.dissector cimport _IPView
from pathspider.observer.icmp cimport is_icmp_error
from pathspider.observer.tcp cimport syn_or_data

cpdef bint ecn_setup(dict rec, ip) except -1

@cython.locals(code=int)
cpdef bint ecn_code(dict rec, _IPView ip, bint rev) except -1

@cython.locals(code=int)
cpdef bint ecn_split_code(dict rec, _IPView ip, bint rev) except -1
