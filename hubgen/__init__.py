"""hubgen: train, publish, load and demo the classic deep generative models on the Hugging Face ecosystem.

    import hubgen
    pipe = hubgen.load_pipeline("path/or/user-repo")   # the right pipeline class for any hubgen model
    hubgen.push("out/vae", "user/vae-digits")          # one commit to the Hugging Face Hub
    hubgen.verify("user/vae-digits").ok                # the card's figures, re-run

Heavy modules (torch, diffusers) load on first use of a name, so `hubgen --help` stays fast.
"""

import importlib

__version__ = "0.1.0"

__all__ = [
    "load_pipeline",
    "push",
    "verify",
    "Family",
    "register_family",
    "get_family",
    "list_families",
    "__version__",
]

_LAZY = {
    "load_pipeline": "hubgen.hub",
    "push": "hubgen.publish",
    "verify": "hubgen.publish",
    "Family": "hubgen.registry",
    "register_family": "hubgen.registry",
    "get_family": "hubgen.registry",
    "list_families": "hubgen.registry",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hubgen' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
