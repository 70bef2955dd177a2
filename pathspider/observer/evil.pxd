# C types for evil.py when it is compiled (Cython, pure-Python mode; see setup.py).
from pathspider.observer.dissector cimport _IPView
from pathspider.observer.tcp cimport syn_or_data

cpdef bint evil_extract(dict rec, _IPView ip, bint rev) except -1
