#!/usr/bin/env bash
# The Debian packages the test suite drives for real: PostgreSQL (integration tests start a
# throwaway cluster, tests/integration/conftest.py), Chromium (the end-to-end tests drive
# Debian's browser with Playwright; a downloaded browser cannot work here), and for voice the
# media server rtpengine, the SIP test peers sipp and baresip, espeak-ng for spoken prompts and
# sox for test audio, and for email the IMAP server dovecot. Installed only when missing, so
# `make test` stays quick on a machine that has them.
set -euo pipefail

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
    echo "test packages: need root (or sudo) to run: $*" >&2; return 1; fi
}

missing=()
if ! command -v initdb >/dev/null 2>&1 && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  missing+=(postgresql)
fi
if ! command -v chromium >/dev/null 2>&1; then
  missing+=(chromium)
fi
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need sipp sip-tester
need baresip baresip-core
need sox sox
# Email: the IMAP tests run Debian's dovecot (in /usr/sbin, often not on a user's PATH).
[ -x /usr/sbin/dovecot ] || need dovecot dovecot-imapd
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -q
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
bash "$(dirname "$0")/voice_packages.sh"
