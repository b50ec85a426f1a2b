# Only here because cffi_modules is a setup() keyword; everything else is in
# pyproject.toml.
from setuptools import setup

setup(cffi_modules=["ext/build_shmlog.py:ffi"])
