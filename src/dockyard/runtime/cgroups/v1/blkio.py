"""v1 blkio: proportional weights (CFQ's blkio.weight, or BFQ's blkio.bfq.weight on kernels
since 5.0) and throttling; statistics from whichever scheduler's files the kernel has."""

from ..common import CgroupDir, CgroupError

THROTTLES = {
    "throttleReadBpsDevice": "blkio.throttle.read_bps_device",
    "throttleWriteBpsDevice": "blkio.throttle.write_bps_device",
    "throttleReadIOPSDevice": "blkio.throttle.read_iops_device",
    "throttleWriteIOPSDevice": "blkio.throttle.write_iops_device",
}


def _weight_file(cg: CgroupDir, name: str) -> str:
    for candidate in (f"blkio.{name}", f"blkio.bfq.{name}"):
        if cg.has(candidate):
            return candidate
    raise CgroupError(f"cannot set blkio {name}: this kernel has neither blkio.{name} nor blkio.bfq.{name}")


def set(cg: CgroupDir, block_io: dict) -> None:
    if block_io.get("weight"):
        cg.write(_weight_file(cg, "weight"), block_io["weight"])
    if block_io.get("leafWeight"):
        cg.write("blkio.leaf_weight", block_io["leafWeight"])
    for device in block_io.get("weightDevice") or []:
        dev = f"{device['major']}:{device['minor']}"
        if device.get("weight"):
            cg.write(_weight_file(cg, "weight_device"), f"{dev} {device['weight']}")
        if device.get("leafWeight"):
            cg.write("blkio.leaf_weight_device", f"{dev} {device['leafWeight']}")
    for key, name in THROTTLES.items():
        for device in block_io.get(key) or []:
            cg.write(name, f"{device['major']}:{device['minor']} {device['rate']}")


def _entries(cg: CgroupDir, name: str) -> list[dict]:
    out = []
    for line in cg.read(name).splitlines():
        fields = line.split()
        if len(fields) == 3 and ":" in fields[0]:
            major, minor = fields[0].split(":")
            out.append({"major": int(major), "minor": int(minor), "op": fields[1], "value": int(fields[2])})
    return out


def stats(cg: CgroupDir) -> dict:
    for prefix in ("blkio.", "blkio.bfq.", "blkio.throttle."):
        if cg.has(f"{prefix}io_service_bytes_recursive"):
            return {
                "ioServiceBytesRecursive": _entries(cg, f"{prefix}io_service_bytes_recursive"),
                "ioServicedRecursive": _entries(cg, f"{prefix}io_serviced_recursive"),
            }
    return {}
