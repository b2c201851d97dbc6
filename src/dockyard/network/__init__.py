"""Container networking, Docker's bridge model on kernel parts: network namespaces, bridges and
veths (rtnetlink), IPAM, published ports and NAT (our own nftables table), embedded DNS."""
