"""Names of a package that load on first use, so importing the package (and `hubgen --help`, and the families'
records) does not import torch or diffusers."""

import importlib

__all__ = ["lazy_names"]


def lazy_names(package: str, names: dict[str, str]):
    """`__getattr__` and `__dir__` for `package` whose attribute NAME lives in the submodule `names[NAME]`
    (relative to the package)."""

    def __getattr__(name):
        if name in names:
            return getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(names)

    return __getattr__, __dir__
