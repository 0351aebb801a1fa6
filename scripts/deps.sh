#!/usr/bin/env bash
# Installs the Debian packages edgert needs, and only the missing ones.
# Idempotent: prints nothing and exits 0 when everything is present.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config file
  libboost-dev libboost-filesystem-dev libboost-system-dev
  libmosquitto-dev mosquitto mosquitto-clients
  libssl-dev openssl
  libsqlite3-dev libsqlitecpp-dev sqlite3
  libfmt-dev libspdlog-dev
  libyaml-cpp-dev
  libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev libopencv-videoio-dev libopencv-objdetect-dev
  catch2 nlohmann-json3-dev libcli11-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "deps.sh: installing ${#missing[@]} missing package(s): ${missing[*]}"
if [[ $(id -u) -eq 0 ]]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  echo "deps.sh: not root and no password-less sudo; install these as root and rerun:" >&2
  echo "  apt-get install -y ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps.sh: done"
