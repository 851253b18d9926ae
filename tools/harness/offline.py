"""Run the real program (`__main__.py`) under Pulumi mocks and collect its graph.

This is what `make preview` and the tests share: the config the CLI would pass
(tools/pulumi_project.py), a fresh event loop and a fresh root stack per run,
the program run with runpy, and every registration recorded with its options.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import runpy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.config import set_all_config
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from components import tokens
from components.node.cloud_init import decompress_user_data
from tools.harness.mocks import SECRET_TEXT, AtomicMocks, RecordingMonitor, Registration
from tools.harness.pulumi_project import PROJECT_DIR, resolve_stack_config

PROGRAM = PROJECT_DIR / "__main__.py"


@dataclass
class StackOutput:
    value: Any
    secret: bool

    def shown(self) -> Any:
        return SECRET_TEXT if self.secret else self.value


@dataclass
class Plan:
    """Everything one run of the program registered."""

    stack: str
    resources: list[Registration]
    outputs: dict[str, StackOutput] = field(default_factory=dict)
    # The StackSettings the program ran with (its module-level `settings`), for tests that render or
    # start what the program describes.
    settings: Any = None

    def of_type(self, type_token: str) -> list[Registration]:
        return [r for r in self.resources if r.type == type_token]

    def named(self, name: str) -> Registration:
        matches = [r for r in self.resources if r.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources named {name!r}")
        return matches[0]

    def children_of(self, parent: Registration) -> list[Registration]:
        return [r for r in self.resources if r.parent == parent.urn]

    def kubernetes_objects(self) -> list[dict[str, Any]]:
        """Every Kubernetes object as it would be applied (inputs, with provider-chosen names filled in);
        a Patch resource's object holds only the fields it applies (kubernetes_patches lists them)."""
        objects = []
        for r in self.resources:
            if not r.custom or not r.type.startswith("kubernetes:") or "apiVersion" not in r.inputs:
                continue
            obj = _reveal_secret_keys(dict(r.inputs), r.state)
            metadata = dict(obj.get("metadata") or {})
            metadata.setdefault("name", (r.state.get("metadata") or {}).get("name", r.name))
            obj["metadata"] = metadata
            objects.append(obj)
        return objects

    def kubernetes_patches(self) -> list[Registration]:
        """The pulumi-kubernetes Patch resources (Server-Side Apply of some fields of an existing object)."""
        return [r for r in self.resources if r.custom and r.type.startswith("kubernetes:") and is_patch(r.type)]

    def instances(self) -> list[Registration]:
        return self.of_type(tokens.INSTANCE)

    def user_data(self, instance: Registration) -> str:
        """An instance's #cloud-config as cloud-init reads it (the program sends it gzip-compressed)."""
        return decompress_user_data(instance.inputs["userDataBase64"])

    def instance_named(self, name: str) -> Registration:
        """The instance whose Name tag is `name` (a node name such as atomic-master-1)."""
        matches = [r for r in self.instances() if (r.inputs.get("tags") or {}).get("Name") == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} instances named {name!r}")
        return matches[0]


def is_patch(type_token: str) -> bool:
    """kubernetes:<group>/<version>:<Kind>Patch: pulumi-kubernetes' patch of an object it did not create."""
    return type_token.startswith("kubernetes:") and type_token.endswith("Patch")


def _reveal_secret_keys(obj: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """A wholly secret map (a Secret's stringData) keeps its keys, each value shown as "[secret]".

    The engine sees the whole property as one secret; the applied object still has
    the keys, and a reviewer needs to see which ones.
    """
    for key, value in obj.items():
        if value == SECRET_TEXT and isinstance(state.get(key), dict):
            obj[key] = {k: SECRET_TEXT for k in state[key]}
    return obj


def forget_previous_run() -> None:
    """A run that failed mid-registration leaves pending tasks, bound to its closed loop, in
    Pulumi's process-wide settings; the next run would await them and fail."""
    settings = runtime_settings.SETTINGS
    with settings.lock:
        settings.outputs.clear()
    settings.rpc_manager.clear()


@contextlib.contextmanager
def _fresh_runtime(
    stack: str, config: dict[str, str], secret_keys: list[str], monitor: RecordingMonitor
) -> Iterator[RecordingMonitor]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    forget_previous_run()
    runtime_settings.set_root_resource(None)  # type: ignore[arg-type]
    set_all_config(config, secret_keys)
    pulumi.runtime.set_mocks(monitor.mocks, project="atomic-mysql", stack=stack, preview=False, monitor=monitor)
    try:
        yield monitor
    finally:
        monitor.close_thread_loops()
        loop.close()
        asyncio.set_event_loop(None)


async def _resolve_outputs(root: Any) -> dict[str, StackOutput]:
    resolved = {}
    for name, value in getattr(root, "outputs", {}).items():
        output = pulumi.Output.from_input(value)
        resolved[name] = StackOutput(await output.future(), bool(await output.is_secret()))
    return resolved


def run_program(
    stack: str,
    overrides: Mapping[str, Any] | None = None,
    secret_overrides: Mapping[str, str] | None = None,
    program: Path = PROGRAM,
    monitor: RecordingMonitor | None = None,
    config_file: Path | None = None,
    previous_outputs: Mapping[str, Any] | None = None,
) -> Plan:
    """Run `program` for `stack` under mocks; raises what the program raises (e.g. SettingsError).

    Pass `monitor` to look at what was registered even when the program fails, and
    `config_file` to read the stack's settings from another file (`pulumi --config-file`), and
    `previous_outputs` for the outputs the stack's last update left (what the engine would answer).
    """
    stack_config = resolve_stack_config(stack, overrides, secret_overrides, config_file=config_file)
    outputs: dict[str, StackOutput] = {}
    program_globals: dict[str, Any] = {}
    monitor = monitor or RecordingMonitor(AtomicMocks(previous_outputs))
    with _fresh_runtime(stack, stack_config.values, stack_config.secret_keys, monitor):
        root = runtime_settings.get_root_resource()

        async def main() -> None:
            cwd = os.getcwd()
            os.chdir(program.parent)
            try:
                program_globals.update(runpy.run_path(str(program), run_name="__main__"))
            finally:
                os.chdir(cwd)
            outputs.update(await _resolve_outputs(root))

        _sync_await(run_pulumi_func(main))
    return Plan(stack=stack, resources=monitor.registrations, outputs=outputs, settings=program_globals.get("settings"))
