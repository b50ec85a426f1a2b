"""cffi build script for the C core (API / out-of-line mode).

Run by setuptools at install time through ``cffi_modules`` in setup.py; never
at import.  The cdef is ext/shmlog.h itself, so Python and C cannot drift.
The build id (package version + a hash of the C sources) is compiled in;
``shm._native`` refuses to import a build whose id does not match.
"""
import importlib.util
import os
import platform

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
# load shm/_buildid.py by path: the package itself is not importable before its build
_spec = importlib.util.spec_from_file_location("_shmlog_buildid", os.path.join(HERE, "..", "shm", "_buildid.py"))
_bid = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bid)
build_id = _bid.build_id

SOURCES = ["shmlog.c", "shmqueue.c", "shmrobust.c", "shmaio.c"]  # translation units (the rest are #included)
C_FILES = _bid.C_FILES  # every C file the build id hashes: setup.py's depends

ffi = FFI()
with open(os.path.join(HERE, "shmlog.h")) as f:
    ffi.cdef(f.read())

CFLAGS = cflags = ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fno-strict-aliasing"]
if platform.machine() in ("x86_64", "AMD64"):
    cflags.append("-mcx16")  # inline cmpxchg16b for the 16-byte claim CAS
LDFLAGS = ldflags = []
if os.environ.get("SHMLOG_SANITIZE"):
    # ASan/UBSan build of the core: see perf/../ext/sanitize.sh
    cflags += ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]
    ldflags += ["-fsanitize=address,undefined"]

DEFINES = [("SHMLOG_BUILD_ID", '"%s"' % build_id(HERE))]

ffi.set_source(
    "shm._shmlog",
    '#include "shmlog.h"',
    sources=[os.path.join("ext", s) for s in SOURCES],
    include_dirs=["ext"],
    define_macros=DEFINES,
    extra_compile_args=cflags,
    extra_link_args=ldflags,
    libraries=["pthread"],  # shmrobust.c's robust mutexes (a stub in glibc >= 2.34, needed before)
)

if __name__ == "__main__":
    # manual in-place build, for development only: python ext/build_shmlog.py
    os.chdir(os.path.dirname(HERE))
    ffi.compile(verbose=True)
