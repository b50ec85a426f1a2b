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
        # every C file of the unit (and shmrobust.c: in the build id), as shm/_buildid.py's C_FILES
        depends=[os.path.join("ext", n) for n in _build.C_FILES],
    )],
)
