"""Small helpers with no knowledge of models or data: files written atomically."""

from swat.utils.io import atomic_write_bytes, atomic_write_json

__all__ = ["atomic_write_bytes", "atomic_write_json"]
