"""Offline data: table formats, importers of published routing data, and replay tools."""
