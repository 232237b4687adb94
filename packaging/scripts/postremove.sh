#!/bin/sh
# Purge (Debian) removes the state and the system user; an rpm erase keeps them.
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "$1" = "purge" ]; then
    rm -rf /var/lib/vz-traffic-exporter /etc/vz-traffic-exporter
    if getent passwd vz-traffic-exporter >/dev/null; then
        userdel vz-traffic-exporter >/dev/null 2>&1 || true
    fi
    if getent group vz-traffic-exporter >/dev/null; then
        groupdel vz-traffic-exporter >/dev/null 2>&1 || true
    fi
fi
exit 0
