"""Which IP addresses a fetch may reach: public ones, judged by the IPv4 address an IPv6 one carries."""

import ipaddress

IPv6 = ipaddress.IPv6Address
METADATA = [ipaddress.ip_network(n) for n in (
    "169.254.0.0/16",     # link-local: AWS/GCP/Azure/OCI 169.254.169.254, ECS 169.254.170.2, EKS 169.254.170.23
    "fd00:ec2::/32",      # AWS IPv6 instance metadata (fd00:ec2::254) and EKS pod identity (fd00:ec2::23)
    "100.100.100.200/32",  # Alibaba Cloud
    "192.0.0.192/32",     # Oracle Cloud (classic)
)]
NAT64 = ipaddress.ip_network("64:ff9b::/96")
LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")


def judged(ip: str) -> list:
    """The addresses to judge for ``ip``: the IPv4 one carried by a translation form (mapped, translated,
    compatible, 6to4, Teredo, NAT64), both for an ISATAP interface id, else the address itself."""
    addr = ipaddress.ip_address(ip.split("%")[0])
    if not isinstance(addr, IPv6):
        return [addr]
    raw = addr.packed
    if addr.ipv4_mapped or addr.sixtofour or addr.teredo:
        return [addr.ipv4_mapped or addr.sixtofour or addr.teredo[1]]
    if (raw[:8] == bytes(8) and raw[8:12] in (b"\xff\xff\0\0", bytes(4)) and int(addr) > 1) or addr in NAT64:
        return [ipaddress.IPv4Address(raw[12:])]
    if raw[8:12] in (b"\0\0\x5e\xfe", b"\x02\0\x5e\xfe"):
        return [addr, ipaddress.IPv4Address(raw[12:])]
    return [addr]


def _public(addr) -> bool:
    """Whether one parsed address is globally routable unicast."""
    return addr.is_global and not addr.is_multicast and not (addr.version == 6 and addr in LOCAL_NAT64)


def _metadata(addr) -> bool:
    """Whether one parsed address is a metadata or link-local one."""
    return any(addr.version == net.version and addr in net for net in METADATA) or addr.is_link_local


def is_public(ip: str) -> bool:
    """False for loopback, private, link-local, unique-local, multicast, reserved, unspecified, local NAT64."""
    return all(_public(a) for a in judged(ip))


def is_metadata(ip: str) -> bool:
    """Whether an address is a cloud metadata or link-local one, refused even where private ones are allowed."""
    return any(_metadata(a) for a in judged(ip))
