"""Package attributes that load their module on first use (PEP 562).

``stemboard``, ``stemboard.plugin`` and ``stemboard.models`` re-export names
whose modules pull in Numba, onnxruntime or pedalboard; loading them lazily
keeps ``import stemboard`` and the CLI's ``--help`` light (issue 25 item 5).
This module lives in the lowest room whose package ``__init__`` is itself light
(``stemboard.dsp``'s is not: it loads the Numba kernels), and imports nothing
of ours.
"""
from importlib import import_module


def lazy_exports(namespace, exports, *, subpackages=()):
    """``(__getattr__, __dir__)`` for a package whose names load on first use.

    Parameters
    ----------
    namespace : dict
        The package's ``globals()``; a loaded name is stored there, so later
        lookups skip ``__getattr__``.
    exports : dict
        ``{module: (name, ...)}``, each public name and the module defining it.
    subpackages : tuple of str
        Subpackages reachable as attributes before anyone imported them.
    """
    package = namespace["__name__"]
    module_of = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name):
        if name in subpackages:
            return import_module(f"{package}.{name}")
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module), name)
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(module_of) | set(subpackages))

    return __getattr__, __dir__
