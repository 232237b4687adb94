#!/bin/sh
# The service's own system user; the package creates it, and nothing else.
set -e
if ! getent group vz-traffic-exporter >/dev/null; then
    groupadd --system vz-traffic-exporter
fi
if ! getent passwd vz-traffic-exporter >/dev/null; then
    useradd --system --gid vz-traffic-exporter --home-dir /var/lib/vz-traffic-exporter \
        --no-create-home --shell /usr/sbin/nologin --comment "vz-traffic-exporter" vz-traffic-exporter
fi
exit 0
