"""The one exception class for bad user input.

Every check of user input in hubgen (arguments, datasets, folders, pipeline calls) raises `UserInputError`.
It is a `ValueError`, so callers of the Python API catch it as diffusers and transformers users expect, while
the CLI catches only this class: it prints the message and exits 2. Any other exception is a bug inside
hubgen (or a library) and keeps its traceback.
"""

__all__ = ["UserInputError"]


class UserInputError(ValueError):
    """Bad input from the user: the message names the argument, the value and what is allowed."""
