# C types for native.py when it is compiled (Cython, pure-Python mode; see setup.py): the
# library functions are cimported, so calling them here is a C call.
from pathspider.observer.dissector cimport _IPView, TCP, UDP
from pathspider.observer.basic cimport basic_count
from pathspider.observer.dscp cimport dscp_extract
from pathspider.observer.ecn cimport ecn_code, ecn_split_code
from pathspider.observer.evil cimport evil_extract
from pathspider.observer.mss cimport mss_extract
from pathspider.observer.tcp cimport tcp_complete, tcp_handshake
from pathspider.observer.tfo cimport tfo_packet
from pathspider.observer.udp cimport udp_zero_checksum

cpdef bint call_ip(int number, dict rec, _IPView ip, bint rev) except -1
cpdef bint call_tcp(int number, dict rec, TCP tcp, bint rev) except -1
cpdef bint call_udp(int number, dict rec, UDP udp, bint rev) except -1
