# -*- Python -*-
import os

import lit.formats

config.name = "CrossPool"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".mlir", ".test"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.crosspool_obj_root, "test")
config.excludes = ["unit", "e2e", "data", "CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py.in"]

config.environment["PATH"] = os.pathsep.join(
    [config.crosspool_tools_dir, config.llvm_tools_dir, config.environment.get("PATH", "")])
config.substitutions.append(("%data", os.path.join(config.crosspool_src_root, "test", "data")))
config.substitutions.append(("%models", os.path.join(config.crosspool_src_root, "test", "data", "models")))
if config.has_compiler:
    config.available_features.add("compiler")
if getattr(config, "has_cuda", False):
    config.available_features.add("cuda")
