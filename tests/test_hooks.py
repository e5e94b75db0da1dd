"""Every event names the hook method that receives it, and every hook method says what it hears."""

from __future__ import annotations

from workbench import hooks


def events() -> list[type[hooks.Event]]:
    found, waiting = [], [hooks.Event]
    while waiting:
        for subclass in waiting.pop().__subclasses__():
            found.append(subclass)
            waiting.append(subclass)
    return found


def test_every_event_names_a_hook_method_and_every_method_hears_one_event():
    handlers = [event.handler for event in events() if event.__module__ == hooks.__name__]
    methods = [name for name in vars(hooks.Hook) if name.startswith("on_")]
    assert sorted(handlers) == sorted(methods) and len(set(handlers)) == len(handlers)
    for name in methods:
        doc = getattr(hooks.Hook, name).__doc__ or ""
        assert doc and "\n" not in doc.strip(), f"Hook.{name}: give it a one-line docstring"
