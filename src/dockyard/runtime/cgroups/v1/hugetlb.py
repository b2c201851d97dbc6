"""v1 hugetlb: hugetlb.<size>.limit_in_bytes per page size."""

from ..common import CgroupDir, check_page_size, hugepage_sizes


def set(cg: CgroupDir, limits: list[dict]) -> None:
    for entry in limits:
        cg.write(f"hugetlb.{check_page_size(entry['pageSize'])}.limit_in_bytes", entry["limit"])


def stats(cg: CgroupDir) -> dict:
    return {
        size: {
            "usage": cg.read_int(f"hugetlb.{size}.usage_in_bytes"),
            "max": cg.read_int(f"hugetlb.{size}.max_usage_in_bytes"),
            "failcnt": cg.read_int(f"hugetlb.{size}.failcnt"),
        }
        for size in hugepage_sizes()
        if cg.has(f"hugetlb.{size}.usage_in_bytes")
    }
