#!/usr/bin/env bash
# The Debian packages OmniCC's voice channel runs on: rtpengine carries the media (OmniCC
# starts its own, userspace mode) and espeak-ng speaks the IVR's prompts. Installed only when
# missing; `make demo` and `make test` both call this.
set -euo pipefail

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
    echo "voice packages: need root (or sudo) to run: $*" >&2; return 1; fi
}

missing=()
command -v rtpengine >/dev/null 2>&1 || missing+=(rtpengine-daemon)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -q
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
