#!/usr/bin/env bash
# The sandbox needs bubblewrap and libseccomp. Install them when we can (root with apt), else say how.
set -euo pipefail
missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2' || missing+=(libseccomp2)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing ${missing[*]} (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    bwrap --version
else
    echo "the sandbox needs ${missing[*]}. Run: sudo apt-get install ${missing[*]}" >&2
fi
