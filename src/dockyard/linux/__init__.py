"""The only room that talks to libc through ctypes: mount, namespaces, prctl, capabilities,
rlimits, seccomp, fds. Everything above calls these typed wrappers; they raise OSError."""
