"""Former path of the TCP/HTTP client helpers; they live in :mod:`pathspider.client.tcpclient`.

Kept so that plugins written against the earlier documentation still import.
"""

from pathspider.client.tcpclient import (IP_RECVERR, IPV6_RECVERR, MAX_REPLY, USER_AGENT,
                                         Pending, close, family_of, finish_connect, http_get,
                                         http_request, http_status, job_host, job_rank,
                                         raise_fd_limit, recv_reply, send_all, start_connect)

__all__ = ["IP_RECVERR", "IPV6_RECVERR", "MAX_REPLY", "USER_AGENT", "Pending", "close",
           "family_of", "finish_connect", "http_get", "http_request", "http_status", "job_host",
           "job_rank", "raise_fd_limit", "recv_reply", "send_all", "start_connect"]
