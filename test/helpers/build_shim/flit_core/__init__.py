"""A stand-in for flit_core's PEP 517 metadata hook, for tests only.

pip prepares an sdist's metadata even for `pip download --no-deps`; the signed sdists in
test/fixtures/signatures/pypi/ build with flit_core (or setuptools, which needs wheel: see
../wheel), neither installed here, and tests fetch nothing from the network. Run pip with --no-build-isolation and this directory on PYTHONPATH: the
metadata is the sdist's own PKG-INFO (what flit_core would write), nothing else is built.
"""
__version__ = "3.9.0"
