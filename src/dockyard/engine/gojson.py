"""Request bodies decoded as dockerd's Go decoder reads them (encoding/json): a field name matches
exactly, or else one differing only in case. Clients rely on it (docker-py sends
"CPURealtimeRuntime" and "detachKeys")."""


def go_keys(obj: dict, known) -> dict:
    """Field names matched as Go's encoding/json matches them: an exact name first, else one
    that differs only in case (docker-py sends "CPURealtimeRuntime", "detachKeys"). Names that
    match no known field are left as they are, for the caller to refuse."""
    if not isinstance(obj, dict) or all(k in known for k in obj):
        return obj
    by_lower = {k.lower(): k for k in known}
    out: dict = {}
    for key, value in obj.items():
        name = key if key in known else by_lower.get(key.lower(), key) if isinstance(key, str) else key
        if name in out and name != key:
            continue  # the exact name wins over a case-folded one
        out[name] = value
    return out
