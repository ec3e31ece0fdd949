"""The live feed of audit events to SIEM sinks: formats (pure), sinks (I/O), the worker."""
