#!/usr/bin/env bash
# The sandbox needs bubblewrap and libseccomp. Install them when we can (root with apt), else say how.
set -euo pipefail
missing=()

# ldconfig lives in /sbin, which is not on a normal user's PATH: look for the library
# where the linker would, rather than cry wolf.
has_seccomp() {
    local ldconfig
    for ldconfig in ldconfig /sbin/ldconfig /usr/sbin/ldconfig; do
        if command -v "$ldconfig" >/dev/null 2>&1; then
            "$ldconfig" -p 2>/dev/null | grep -q 'libseccomp\.so\.2' && return 0
            break
        fi
    done
    compgen -G '/usr/lib/*/libseccomp.so.2' >/dev/null || compgen -G '/lib/*/libseccomp.so.2' >/dev/null \
        || compgen -G '/usr/lib*/libseccomp.so.2' >/dev/null
}

command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
has_seccomp || missing+=(libseccomp2)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing ${missing[*]} (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    bwrap --version
else
    echo "the sandbox needs ${missing[*]}. Run: sudo apt-get install ${missing[*]}" >&2
fi
