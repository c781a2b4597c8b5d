"""Named classes imported on first use: the backend and decoder registries.

A registry maps the name a model spec uses (``format: onnx``, ``decoder: {type: yolo}``) to a
``"module:Class"`` string, so that naming a runtime imports nothing until a model of that kind
loads. :meth:`Registry.create` checks the spec's keyword arguments against the class's
``__init__`` before calling it, so a typo in a spec is one line naming the field, not a
``TypeError`` from deep inside a runtime.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Dict, Iterable, List, Mapping, Type

from dl_vision.errors import ConfigError


class Registry:
    """Names mapped to lazily imported classes.

    Args:
        kind: what the classes are, for messages (``"backend"``, ``"decoder"``).
        name_field: the spec field that holds the name (``"format"``, ``"decoder.type"``).
        options_field: the spec field that holds the keyword arguments (``"runtime"``, ``"decoder.params"``).
        entries: ``{name: "module:Class"}``, in the order messages list them.
    """

    def __init__(self, kind: str, name_field: str, options_field: str, entries: Mapping[str, str]) -> None:
        self.kind = kind
        self.name_field = name_field
        self.options_field = options_field
        self._entries: Dict[str, str] = dict(entries)

    def names(self) -> List[str]:
        """The registered names, in registration order."""
        return list(self._entries)

    def get(self, name: str) -> Type[Any]:
        """The class registered as ``name`` (imports its module, not the runtime behind it).

        Raises:
            ConfigError: nothing is registered under ``name``.
        """
        try:
            target = self._entries[name]
        except KeyError:
            raise ConfigError(
                "%s: unknown %s %r; expected one of %s" % (self.name_field, self.kind, name, ", ".join(self._entries))
            ) from None
        module_name, class_name = target.split(":")
        return getattr(importlib.import_module(module_name), class_name)

    def check_options(self, name: str, options: Mapping[str, Any], fixed: Iterable[str] = ()) -> Type[Any]:
        """The class registered as ``name``, after checking that it takes every key of ``options``.

        Args:
            name: the registered name.
            options: the spec's keyword arguments.
            fixed: names of the arguments the caller supplies itself (not options).

        Raises:
            ConfigError: unknown name, or an option the class does not take.
        """
        cls = self.get(name)
        params = inspect.signature(cls).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            accepted = [n for n, p in params.items() if n not in fixed and p.kind is not p.VAR_POSITIONAL]
            for key in options:
                if key not in accepted:
                    raise ConfigError(
                        "%s.%s: not an option of %s %s; expected one of %s"
                        % (self.options_field, key, self.kind, name, ", ".join(accepted) or "(none)")
                    )
        return cls

    def create(self, name: str, options: Mapping[str, Any], **fixed: Any) -> Any:
        """Build the class registered as ``name`` with a spec's options.

        Args:
            name: the registered name.
            options: the spec's keyword arguments (``runtime``, ``decoder.params``).
            **fixed: arguments the caller supplies itself (``path``, ``labels``), not the spec.

        Raises:
            ConfigError: unknown name, an option the class does not take, or options its constructor
                rejects with a ``TypeError`` (a value of the wrong type, a required one missing).
        """
        cls = self.check_options(name, options, fixed)
        try:
            return cls(**fixed, **options)
        except TypeError as err:  # a value of the wrong type, or a required option missing
            raise ConfigError("%s: bad options for %s %s: %s" % (self.options_field, self.kind, name, err)) from err
