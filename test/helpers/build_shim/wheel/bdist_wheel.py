"""bdist_wheel as setuptools' dist_info command uses it: egg2dist only (see __init__.py)."""
import os
import shutil

from setuptools import Command


class bdist_wheel(Command):
    user_options = []

    def initialize_options(self):
        pass

    def finalize_options(self):
        pass

    def run(self):
        raise RuntimeError("the wheel test stand-in only converts egg-info to dist-info")

    def egg2dist(self, egginfo_path, distinfo_path):
        os.makedirs(distinfo_path, exist_ok=True)
        shutil.copyfile(os.path.join(egginfo_path, "PKG-INFO"), os.path.join(distinfo_path, "METADATA"))
        shutil.rmtree(egginfo_path, ignore_errors=True)
