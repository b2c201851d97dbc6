"""cgroup v2: one unified tree. `manager.V2Manager` keeps one directory, enables controllers in
its ancestors' cgroup.subtree_control, and converts the v1-shaped OCI resources to v2 files
(cpu.weight, cpu.max, memory.swap.max, io.weight) the way runc does."""
