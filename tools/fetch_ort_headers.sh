#!/usr/bin/env bash
# Fetch the ONNX Runtime C/C++ API headers into build/ort-headers/ (idempotent).
#
# No pip package ships them, so this downloads Debian trixie's libonnxruntime-dev .deb (headers of
# ORT 1.21) with a private apt configuration (nothing in /etc/apt is read or changed, nothing is
# installed) and unpacks it with dpkg -x. The runtime loads the pip wheel's libonnxruntime at run
# time (ORT_API_MANUAL_INIT + dlopen), so only the headers are needed to build.
#
# Usage: tools/fetch_ort_headers.sh [dest]   (dest defaults to build/ort-headers)
# Env:   NF_ORT_DEB_SUITE (default trixie), NF_DEBIAN_MIRROR (default http://deb.debian.org/debian)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
dest="${1:-build/ort-headers}"
suite="${NF_ORT_DEB_SUITE:-trixie}"
mirror="${NF_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
marker="$dest/usr/include/onnxruntime/onnxruntime_cxx_api.h"

if [ -f "$marker" ]; then
    exit 0
fi

for tool in apt-get dpkg; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "fetch_ort_headers: $tool not found; install libonnxruntime-dev headers by hand and pass -DORT_INCLUDE_DIR=<dir>" >&2
        exit 1
    fi
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/deb"
echo "deb $mirror $suite main" > "$work/sources.list"
# _apt cannot write into a root-private mktemp dir; download as the invoking user instead.
apt_opts=(
    -o "Dir::Etc::sourcelist=$work/sources.list"
    -o "Dir::Etc::sourceparts=-"
    -o "Dir::State::Lists=$work/lists"
    -o "Dir::State::status=/dev/null"
    -o "Dir::Cache=$work/cache"
    -o "APT::Sandbox::User=$(id -un)"
    -o "Debug::NoLocking=1"
    -o "APT::Get::List-Cleanup=0"
)
echo "fetch_ort_headers: downloading libonnxruntime-dev from $mirror $suite" >&2
apt-get -q "${apt_opts[@]}" update >&2
(cd "$work/deb" && apt-get -q "${apt_opts[@]}" download libonnxruntime-dev >&2)

deb="$(ls "$work"/deb/libonnxruntime-dev_*.deb)"
mkdir -p "$dest.tmp"
dpkg -x "$deb" "$dest.tmp"
if [ ! -f "$dest.tmp/usr/include/onnxruntime/onnxruntime_cxx_api.h" ]; then
    echo "fetch_ort_headers: $(basename "$deb") has no usr/include/onnxruntime/onnxruntime_cxx_api.h" >&2
    rm -rf "$dest.tmp"
    exit 1
fi
basename "$deb" > "$dest.tmp/SOURCE"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
echo "fetch_ort_headers: headers in $dest/usr/include/onnxruntime" >&2
