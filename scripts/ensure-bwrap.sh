#!/usr/bin/env bash
# The sandbox needs bubblewrap. Install it when we can (root with apt), else say how.
set -euo pipefail
if command -v bwrap >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing bubblewrap (Debian package)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null
    bwrap --version
else
    echo "bubblewrap is missing; the sandbox needs it. Run: sudo apt-get install bubblewrap" >&2
fi
