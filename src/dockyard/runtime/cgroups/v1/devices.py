"""v1 devices: each OCI rule becomes one line in devices.allow or devices.deny, in order,
so Docker's usual "deny all, then allow these" list works as written."""

from ..common import CgroupDir, device_rule


def rule_line(rule: dict) -> str:
    kind, major, minor, access = device_rule(rule)
    return f"{kind} {'*' if major < 0 else major}:{'*' if minor < 0 else minor} {access}"


def set(cg: CgroupDir, rules: list[dict]) -> None:
    for rule in rules:
        cg.write("devices.allow" if rule.get("allow") else "devices.deny", rule_line(rule))
