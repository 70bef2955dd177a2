#!/usr/bin/env bash
# Puts the two large upstream captures (random.pcap, real.pcap) into this directory, from
# Debian's pathspider package, and checks them against SHA256SUMS. Needs apt and dpkg-deb.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
apt-get download pathspider >/dev/null
dpkg-deb -x pathspider_*.deb root
for name in random.pcap real.pcap; do
  cp "root/usr/lib/python3/dist-packages/pathspider/tests/data/$name" "$here/$name"
done
cd "$here"
grep -E ' (random|real)\.pcap$' SHA256SUMS | sha256sum -c -
