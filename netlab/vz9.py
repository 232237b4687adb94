"""The Virtuozzo Hybrid Server 9 accounting layout, rebuilt with the real nft.

Per container a table ``netdev ve_<ctid>`` with the class sets
``net_class4_<c>``/``net_class6_<c>`` (classes 1..15), named counters
``counter_{i,o}{4,6}_<c>``, chains ``chain_{i,o}{4,6}_<c>`` that update them,
an ingress chain ``vnet_<veth>`` on the container's host-side veth (what the
container sends, classified by destination) and an ingress chain
``net_<dev>`` on the node's uplink (what it receives, classified by source).
Virtuozzo picks the container's frames on the uplink by destination MAC
(``ether daddr != @mac_list return``); in the routed lab every frame carries
the node's MAC, so the lab picks them by the container's addresses instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def table_name(ctid: str) -> str:
    return "ve_" + ctid.replace("-", "")


def nft_script(
    ctid: str,
    veth: str,
    uplink: str,
    addresses: Sequence[str],
    classes: Mapping[int, Sequence[str]],
) -> str:
    v4 = [a for a in addresses if ":" not in a]
    v6 = [a for a in addresses if ":" in a]
    lines = [f"table netdev {table_name(ctid)} {{"]
    out_rules, in_rules = [], []
    for klass, networks in sorted(classes.items()):
        if klass == 0:
            continue  # Virtuozzo 9 counts classes 1..15 only
        for fam, ip, nets in (
            ("4", "ip", [n for n in networks if ":" not in n]),
            ("6", "ip6", [n for n in networks if ":" in n]),
        ):
            addr_type = "ipv4_addr" if fam == "4" else "ipv6_addr"
            elements = ", ".join(nets)
            lines += [f"\tset net_class{fam}_{klass} {{", f"\t\ttype {addr_type}", "\t\tflags interval"]
            if nets:
                lines.append(f"\t\telements = {{ {elements} }}")
            lines.append("\t}")
            for d in ("i", "o"):
                name = f"counter_{d}{fam}_{klass}"
                lines.append(f"\tcounter {name} {{ packets 0 bytes 0 }}")
                lines += [f"\tchain chain_{d}{fam}_{klass} {{", f'\t\tcounter name "{name}"', "\t}"]
            out_rules.append(f"{ip} daddr @net_class{fam}_{klass} jump chain_o{fam}_{klass}")
            in_rules.append(f"{ip} saddr @net_class{fam}_{klass} jump chain_i{fam}_{klass}")
    lines.append(f"\tchain vnet_{veth.replace('.', '_')} {{")
    lines.append(f'\t\ttype filter hook ingress device "{veth}" priority 0;')
    lines += [f"\t\t{rule}" for rule in out_rules]
    lines.append("\t}")
    lines.append(f"\tchain net_{uplink} {{")
    lines.append(f'\t\ttype filter hook ingress device "{uplink}" priority 0;')
    mine = []
    if v4:
        mine.append(f"ip daddr {{ {', '.join(v4)} }} goto ct_in")
    if v6:
        mine.append(f"ip6 daddr {{ {', '.join(v6)} }} goto ct_in")
    lines += [f"\t\t{rule}" for rule in mine]
    lines.append("\t}")
    lines.append("\tchain ct_in {")
    lines += [f"\t\t{rule}" for rule in in_rules]
    lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"
