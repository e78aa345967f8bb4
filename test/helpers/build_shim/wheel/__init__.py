"""A stand-in for `wheel`'s bdist_wheel.egg2dist, for tests only (see flit_core/__init__.py).

setuptools' PEP 517 metadata hook (the default backend of an sdist with no [build-system], such
as pypi_attestations-0.0.19) needs wheel's bdist_wheel command to turn egg-info into dist-info;
wheel is not installed here. This does only that conversion.
"""
__version__ = "0.0.0"
