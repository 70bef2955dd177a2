# C types for mss.py when it is compiled (Cython, pure-Python mode; see setup.py).
from pathspider.observer.dissector cimport TCP

cpdef bint mss_extract(dict rec, TCP tcp, bint rev) except -1
