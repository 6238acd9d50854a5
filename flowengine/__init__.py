"""flowengine: a declarative call-flow engine for the SignalWire RELAY call API."""

__version__ = "0.1.0"
