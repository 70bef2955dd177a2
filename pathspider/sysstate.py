"""Former path of the system-state helpers; they live in :mod:`pathspider.client.sysstate`.

Kept so that plugins written against the earlier documentation still import.
"""

from pathspider.client.sysstate import (NftTable, Sysctl, SystemState, SystemStateError,
                                        install_signal_handlers, nft_table, restore_all,
                                        run_nft, sysctl)

__all__ = ["NftTable", "Sysctl", "SystemState", "SystemStateError", "install_signal_handlers",
           "nft_table", "restore_all", "run_nft", "sysctl"]
