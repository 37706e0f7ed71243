"""Run a function when a module is first imported: `import image_tokenizer` registers our Auto classes with
transformers without importing transformers itself (about 0.8 CPU seconds, paid by every CLI call otherwise).

If transformers is already imported, the function runs at once; if not, a one-shot import hook runs it right after
transformers' own module has loaded, before the importer gets it, so `AutoConfig` etc. always know our model_type.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Callable
from typing import Any


def call_when_imported(name: str, function: Callable[[], Any]) -> None:
    """Call `function()` once module `name` (top-level) is imported: now if it already is, else right after."""
    if name in sys.modules:
        function()
    else:
        sys.meta_path.insert(0, _ImportWatcher(name, function))


class _ImportWatcher(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for `name`, it takes the spec the other finders give and wraps its loader."""

    def __init__(self, name: str, function: Callable[[], Any]):
        self.name, self.function = name, function

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # one shot; the other finders answer from here on
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _CallingLoader(spec.loader, self.function)
        return spec


class _CallingLoader(importlib.abc.Loader):
    """The module's own loader, then the function."""

    def __init__(self, loader: importlib.abc.Loader, function: Callable[[], Any]):
        self.loader, self.function = loader, function

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self.loader.exec_module(module)
        self.function()

    def __getattr__(self, attribute: str) -> Any:  # is_package, get_resource_reader, ...: the real loader's
        return getattr(self.loader, attribute)
