"""Loads the compiled C core and funnels its status codes into exceptions."""
from ._buildid import build_id, source_ext_dir
from ._version import __version__

try:
    from ._shmlog import ffi, lib
    from . import _fastlog
except ImportError as exc:  # pragma: no cover - exercised by hand
    raise ImportError(
        "shmbroker's C core (shm._shmlog) is not built. Install the package so "
        "setuptools compiles it: `pip install -e .` in the source tree (needs gcc and "
        "the Python headers). It is never compiled at import." ) from exc

BUILD_ID = ffi.string(lib.log_build_id()).decode()


def _check_build():
    ext = source_ext_dir()
    want = build_id(ext) if ext else None
    for built in (BUILD_ID, _fastlog.build_id()):
        if not built.startswith(__version__ + "+") or (want is not None and built != want):
            raise ImportError(
                "stale shmbroker C core: built as %s but the sources are %s. Rebuild it: "
                "`pip install -e .` in the source tree." % (built, want or __version__))


_check_build()
