#!/bin/sh
# On removal (not on upgrade): stop the service, which saves its state, then
# take our accounting objects out of the firewall.
set -e
case "$1" in
    remove|purge|0) ;;
    *) exit 0 ;;
esac
if [ -d /run/systemd/system ]; then
    systemctl disable --now vz-traffic-exporter.service >/dev/null 2>&1 || true
fi
/usr/bin/vz-traffic-exporter --config /etc/vz-traffic-exporter/config.yaml rules remove >/dev/null 2>&1 || true
exit 0
