"""Runs calls through FlowVersions: one shared machine per version, one Session per call."""

from flowengine.engine.machine import END, FlowRuntime
from flowengine.engine.resolver import DirectoryResolver, FlowResolver
from flowengine.engine.session import Session, SessionReport, TraceEntry

__all__ = ["END", "DirectoryResolver", "FlowResolver", "FlowRuntime", "Session",
           "SessionReport", "TraceEntry"]
