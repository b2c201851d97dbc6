"""cgroup v1: one hierarchy per controller (or per co-mounted group such as "cpu,cpuacct"),
each a directory tree of its own. `manager.V1Manager` keeps one directory per hierarchy; each
controller module writes OCI linux.resources into its files and reads its statistics."""
