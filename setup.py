# setup() keywords that pyproject.toml cannot hold: the cffi module and the
# METH_FASTCALL companion extension (see ext/fastlog.c for why it exists).
import importlib.util
import os

from setuptools import Extension, setup

_here = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("_shmlog_build", os.path.join(_here, "ext", "build_shmlog.py"))
_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_build)

setup(
    cffi_modules=["ext/build_shmlog.py:ffi"],
    ext_modules=[Extension(
        "shm._fastlog",
        sources=["ext/fastlog.c"],
        include_dirs=["ext"],
        define_macros=_build.DEFINES,
        extra_compile_args=_build.CFLAGS + ["-fvisibility=hidden"],
        extra_link_args=_build.LDFLAGS,
        depends=["ext/shmlog.c", "ext/shmlog_wait.c", "ext/shmwords.c", "ext/shmqueue.c", "ext/shmaio.c",
                 "ext/fastqueue.c", "ext/fastlat.c", "ext/fastproduce.c", "ext/fastreader.c", "ext/fastmsg.c", "ext/fastpart.c", "ext/fastpoll.c",
                 "ext/shmrobust.c", "ext/shmlog.h", "ext/shmlog_atomic.h", "ext/shmhash.h", "ext/shmlat.h"],  # shmrobust.c: in the build id
    )],
)
