"""v2 hugetlb: hugetlb.<size>.max per page size."""

from ..common import CgroupDir, check_page_size, hugepage_sizes


def set(cg: CgroupDir, limits: list[dict]) -> None:
    for entry in limits:
        cg.write(f"hugetlb.{check_page_size(entry['pageSize'])}.max", entry["limit"])


def stats(cg: CgroupDir) -> dict:
    return {
        size: {
            "usage": cg.read_int(f"hugetlb.{size}.current"),
            "failcnt": cg.read_keyed(f"hugetlb.{size}.events").get("max", 0),
        }
        for size in hugepage_sizes()
        if cg.has(f"hugetlb.{size}.current")
    }
