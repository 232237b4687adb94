"""The one registry of source names: config, exporter, exposition and the README use these.

A source name is the ``source`` label of ``vz_traffic_source_up`` and of the
counter resets, and a key or value of the configuration.
"""

from __future__ import annotations

# Who owns which address (containers.discovery), in the order auto tries them after static.
DISCOVERY_SOURCES = ("static", "vzlist", "prlctl", "veinfo")
# Netfilter objects we manage or adopt (netfilter.backend), in the order backend: auto tries them.
BACKENDS = ("nftables", "ipset", "iptables")
BACKEND_CHOICES = ("auto", "iptables", "ipset", "nftables", "off")
# The kernel's own accounting (the kernel: section), as the config lists them.
KERNEL_SOURCES = ("venetstat", "vznetstat", "nft_counters", "interfaces")
# Where several kernel sources have the same container series, the first here wins
# (venetstat's bytes come with vznetstat's packets: both read the same kernel counters).
CONTAINER_PRECEDENCE = ("nft_counters", "venetstat", "vznetstat")
# Every source that counts traffic (its resets are exported, from 0).
COUNTING_SOURCES = (*BACKENDS, *KERNEL_SOURCES)
ALL_SOURCES = (*DISCOVERY_SOURCES, *COUNTING_SOURCES)
