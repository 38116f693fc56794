"""dockyard: a Docker-compatible, daemonless container engine on runc."""

__version__ = "0.1.0"
