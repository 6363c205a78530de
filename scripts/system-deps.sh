#!/bin/sh
# Debian packages the test suite uses: SpamAssassin (spam scores), Postfix (its smtp-sink for the
# throughput benchmark, and a private Postfix relay for the production-README test), nginx (the
# README's TLS proxy, tests/test_production_readme.py) and Chromium (browser tests). Installed
# only if missing.
set -e
missing=""
command -v spamassassin >/dev/null 2>&1 || missing="$missing spamassassin"
command -v smtp-sink >/dev/null 2>&1 || [ -x /usr/sbin/smtp-sink ] || missing="$missing postfix"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$missing nginx-light"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "Please install:$missing (e.g. sudo apt-get install$missing)" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
