"""A TCP port free on 127.0.0.1, below the kernel's ephemeral range.

A port the kernel picks (bind to port 0) comes from that range, and is free only until an outgoing
connection takes it as its own end: a server started a moment later then fails with "Address
already in use" (seen in CI: a cluster replica's port, taken by another replica's connection to
PostgreSQL). The shell scripts call this file (`free_port` in lib.sh); the Python ones import it.
"""

import random
import socket


def free_port():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ranges:
            low = int(ranges.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    for _ in range(1000):
        # No room below the range (or no Linux): the kernel's pick.
        port = random.randrange(10000, low) if low > 10000 else 0
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise SystemExit("free_port: no free port below the ephemeral range")


if __name__ == "__main__":
    print(free_port())
