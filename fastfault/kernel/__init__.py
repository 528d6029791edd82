"""Live-kernel tools: read a file's page-cache folio layout and record fault-path ground-truth cases."""
