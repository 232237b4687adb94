"""vz-traffic-exporter: per-container network traffic of OpenVZ/Virtuozzo and Linux hosts."""

__version__ = "0.1.0"
