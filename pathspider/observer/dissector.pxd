cimport cython

# C types for dissector.py when it is compiled (Cython, pure-Python mode): the header views
# become extension types whose attributes are C fields, so the flow table fills them and
# chain functions read them without a dictionary or descriptor lookup. The .py file is the
# only source; without a compiler it runs as it is.

cdef class Prefix:
    cdef public object addr

cdef class _IPView:
    cdef public object buf
    cdef public Py_ssize_t off, end, l4, capend
    cdef public int proto, size, traffic_class
    cdef public double seconds
    cdef public object _tcp, _udp, _icmp

cdef class IP4(_IPView):
    pass

cdef class IP6(_IPView):
    cdef public Py_ssize_t frag

cdef class _TransportView:
    cdef public object buf
    cdef public Py_ssize_t off, end

cdef class TCP(_TransportView):
    cdef public int flags

cdef class UDP(_TransportView):
    pass

cdef class ICMP:
    cdef public object buf
    cdef public Py_ssize_t off, end
    cdef public double seconds

cdef class ICMP6(ICMP):
    pass

@cython.locals(cache=dict)
cpdef str _addr_text(addr)

@cython.locals(p="const unsigned char *", off=Py_ssize_t)
cpdef tuple view_endpoints(_IPView ip)

@cython.locals(proto=int, p="const unsigned char *", l4=Py_ssize_t)
cpdef tuple _ports(_IPView ip)
