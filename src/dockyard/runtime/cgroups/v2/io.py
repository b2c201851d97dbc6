"""v2 io: io.weight or io.bfq.weight, and io.max throttling; OCI blockIO is v1-shaped."""

from dockyard.runtime import log

from ..common import CgroupDir

THROTTLES = {
    "throttleReadBpsDevice": "rbps",
    "throttleWriteBpsDevice": "wbps",
    "throttleReadIOPSDevice": "riops",
    "throttleWriteIOPSDevice": "wiops",
}


def blkio_weight_to_io_weight(weight: int) -> int:
    """blkio.weight (10..1000) to io.weight (1..10000), linearly; 0 stays unset."""
    return 0 if weight == 0 else 1 + (weight - 10) * 9999 // 990


def _weight(cg: CgroupDir, weight: int) -> tuple[str, int]:
    # BFQ's weight keeps blkio's 1..1000 range, so it takes the value unconverted.
    if cg.has("io.bfq.weight"):
        return "io.bfq.weight", weight
    return "io.weight", blkio_weight_to_io_weight(weight)


def set(cg: CgroupDir, block_io: dict) -> None:
    if block_io.get("weight"):
        cg.write(*_weight(cg, block_io["weight"]))
    if block_io.get("leafWeight"):
        log.warning("cgroup v2 has no leaf weight; ignoring blockIO.leafWeight")
    for device in block_io.get("weightDevice") or []:
        if device.get("weight"):
            name, value = _weight(cg, device["weight"])
            cg.write(name, f"{device['major']}:{device['minor']} {value}")
    for key, field in THROTTLES.items():
        for device in block_io.get(key) or []:
            cg.write("io.max", f"{device['major']}:{device['minor']} {field}={device['rate']}")


def stats(cg: CgroupDir) -> dict:
    service_bytes, serviced = [], []
    for line in cg.read("io.stat").splitlines():
        device, *fields = line.split()
        major, minor = (int(x) for x in device.split(":"))
        values = dict(f.split("=", 1) for f in fields if "=" in f)
        for op, prefix in (("Read", "r"), ("Write", "w")):
            service_bytes.append({"major": major, "minor": minor, "op": op, "value": int(values.get(f"{prefix}bytes", 0))})
            serviced.append({"major": major, "minor": minor, "op": op, "value": int(values.get(f"{prefix}ios", 0))})
    return {"ioServiceBytesRecursive": service_bytes, "ioServicedRecursive": serviced}
