"""The local driver: bubblewrap namespaces, Landlock, seccomp and rlimits on this machine."""
