"""The build id compiled into the C core: package version + source hash.

Self-contained (no package imports): ext/build_shmlog.py loads this file by
path at build time, before the package is importable."""
import hashlib
import os
import re

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "_version.py")) as _f:
    __version__ = re.search(r'__version__ = "([^"]+)"', _f.read()).group(1)

C_FILES = ("shmlog.c", "shmlog_wait.c", "shmwords.c", "shmqueue.c", "shmrobust.c", "shmaio.c", "shmlog.h",
           "shmlog_atomic.h", "shmhash.h", "fastlog.c", "fastfetch.c", "fastqueue.c", "fastlat.c", "fastproduce.c", "fastreader.c", "fastmsg.c", "fastpart.c",
           "fastpoll.c", "shmlat.h")


def build_id(ext_dir):
    """Version plus a hash of the C sources in *ext_dir*."""
    h = hashlib.sha256()
    for name in C_FILES:
        with open(os.path.join(ext_dir, name), "rb") as f:
            h.update(name.encode() + b"\0" + f.read())
    return "%s+%s" % (__version__, h.hexdigest()[:16])


def source_ext_dir():
    """ext/ beside the package when running from a source tree, else None."""
    d = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ext")
    return d if all(os.path.exists(os.path.join(d, n)) for n in C_FILES) else None
