#!/usr/bin/env bash
# System libraries the project needs beyond Python: Pango and HarfBuzz-subset for WeasyPrint (PDF
# invoices; without the subsetter every PDF takes ~4x longer), fonts for
# the PDFs, poppler-utils (pdftoppm) to look at rendered PDFs, and Debian's chromium for the
# admin's browser tests (Playwright drives /usr/bin/chromium; it never downloads a browser), and
# redis-server, which the tests start on a port of their own to check throttles shared across
# workers (production names its Redis with CACHE_URL). Installs what is missing with
# apt-get when run as root on Debian/Ubuntu; otherwise says what to install and goes on.
set -euo pipefail
packages=(libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core poppler-utils chromium redis-server)
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing system packages: ${missing[*]}"
  # Another apt-get (unattended upgrades, a second checkout's `make`) may hold apt's locks: wait
  # for it, up to ten minutes, instead of failing at once. `install` waits for the dpkg lock by
  # itself (DPkg::Lock::Timeout); `update` has no such option for its lists lock, so it is retried.
  for attempt in $(seq 60); do
    if error=$(apt-get update -qq 2>&1 >/dev/null); then break; fi
    case "$error" in
      *"Could not get lock"*) [ "$attempt" -lt 60 ] && { echo "Waiting for another apt-get to finish…"; sleep 10; continue; } ;;
    esac
    echo "$error" >&2
    exit 1
  done
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
else
  echo "Please install these system packages (WeasyPrint needs them; the browser tests need chromium): ${missing[*]}" >&2
fi
