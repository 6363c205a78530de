#!/bin/sh
# Debian packages the test suite uses: SpamAssassin (spam scores), Postfix (smtp-sink, a fast
# SMTP sink for the throughput benchmark; a private Postfix as the relay that bounces mail in
# tests/test_bounces_postfix.py and relays the production-README test's mail), nginx (the
# README's TLS proxy, tests/test_production_readme.py) and Chromium (browser tests). Installed
# only if missing.
set -e
missing=""
command -v spamassassin >/dev/null 2>&1 || missing="$missing spamassassin"
command -v smtp-sink >/dev/null 2>&1 || [ -x /usr/sbin/smtp-sink ] || missing="$missing postfix"
[ -x /usr/sbin/postfix ] || case "$missing" in *postfix*) ;; *) missing="$missing postfix" ;; esac
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$missing nginx-light"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "Please install:$missing (e.g. sudo apt-get install$missing)" >&2
  exit 1
fi
# Postfix's own system instance stays unconfigured and stopped: the tests run private ones.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
