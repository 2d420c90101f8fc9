"""Run configuration: presets (YAML files in harness/presets/) and the resolved run spec whose hash
identifies a run.

A preset sets how many seeds to sample, option values for every benchmark that has them (its `eval`
section: evaluation sizes and answer length) and for every aligner that has them (`options`). Aligners and
benchmarks declare typed options (their `options_class`): the defaults, then the preset, then the command
line (`--option` for the aligner, `--eval-option` for the benchmark), each parsed and range-checked before
any work (see harness/options.py).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from harness import registry
from harness.errors import HarnessError
from harness.options import Layer, as_dict, resolve

DEFAULT_MODEL = "gemma-3-270m"
PRESET_DIR = Path(__file__).parent / "presets"


@dataclass(frozen=True)
class Preset:
    name: str
    n_seeds: int | None
    eval: dict[str, Any]  # option values for every benchmark that has the option
    options: dict[str, Any]  # option values for every aligner that has the option
    description: str


def read_preset(path: Path) -> Preset:
    """A preset file; a malformed one is one clear error naming the file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("eval"), dict):
            raise ValueError("expected a mapping with description, seeds, eval and options")
        options = data.get("options") or {}
        if not isinstance(options, dict):
            raise ValueError("options: expected a mapping of option names to values")
        return Preset(name=path.stem, n_seeds=data.get("seeds"), eval=dict(data["eval"]), options=dict(options),
                      description=str(data.get("description", "")))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, TypeError, ValueError) as exc:
        raise HarnessError(f"preset file {path} is malformed: {str(exc).splitlines()[0]}") from None


PRESETS: dict[str, Preset] = {path.stem: read_preset(path) for path in sorted(PRESET_DIR.glob("*.yaml"))}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise HarnessError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]


def aligner_options(aligner: str, preset: str, given: Mapping[str, Any] | None = None,
                    flag: str = "--option") -> Any:
    """The aligner's typed options: its defaults, then the preset's values, then `given` (the command line)."""
    options_class = registry.get("aligners", aligner).options_class
    return resolve(options_class, [Layer(f"preset {preset}:", get_preset(preset).options),
                                   Layer(flag, dict(given or {}), strict=True)], f"aligner {aligner}")


def benchmark_options(benchmark: str, preset: str, given: Mapping[str, Any] | None = None,
                      flag: str = "--eval-option") -> Any:
    """The benchmark's typed options: its defaults, then the preset's `eval` values, then `given`."""
    options_class = registry.get("benchmarks", benchmark).options_class
    return resolve(options_class, [Layer(f"preset {preset}: eval:", get_preset(preset).eval),
                                   Layer(flag, dict(given or {}), strict=True)], f"benchmark {benchmark}")


@dataclass
class RunConfig:
    """Everything that determines a run's results. Its hash identifies the run directory."""

    aligner: str
    benchmark: str
    model: str = DEFAULT_MODEL
    backend: str = "hf"
    preset: str = "demo"
    seed: int = 0
    n_seeds: int | None = None
    seeds_file: str | None = None
    seeds_sha256: str | None = None
    limit: int | None = None
    # The backend's typed options (`--backend-option`, e.g. a server's base_url); {} for the hf backend.
    backend_options: dict[str, Any] = field(default_factory=dict)
    # The judge of the benchmark's first judge role (None: the benchmark needs no judge).
    judge: str | None = "embedded-safety"
    # Passed to the judge factory (e.g. model, base_url); API keys never go here, only their variable names.
    judge_options: dict[str, Any] = field(default_factory=dict)
    # The aligner's resolved, typed options (every field of its options_class).
    aligner_options: dict[str, Any] = field(default_factory=dict)
    # The benchmark's resolved, typed options (every field of its options_class): sizes, answer length.
    benchmark_options: dict[str, Any] = field(default_factory=dict)
    eval_batch_size: int = 32  # generation / scoring batch of the evaluation
    # `harness eval` of an aligned-model artifact: its content key (the artifact replaces the alignment).
    artifact: str | None = None

    def to_dict(self) -> dict[str, Any]:
        config = asdict(self)
        if config["artifact"] is None:
            del config["artifact"]  # runs that align themselves keep the config (and hash) they always had
        if not config["backend_options"]:
            del config["backend_options"]  # likewise for runs on a backend without options
        return config

    def options(self) -> Any:
        """The aligner's options as its typed dataclass."""
        options_class = registry.get("aligners", self.aligner).options_class
        return resolve(options_class, [Layer("config", self.aligner_options, strict=True)], f"aligner {self.aligner}")

    def eval_options(self) -> Any:
        """The benchmark's options as its typed dataclass."""
        options_class = registry.get("benchmarks", self.benchmark).options_class
        return resolve(options_class, [Layer("config", self.benchmark_options, strict=True)],
                       f"benchmark {self.benchmark}")

    @classmethod
    def from_preset(cls, aligner: str, benchmark: str, preset: str, *, options: Mapping[str, Any] | None = None,
                    eval_options: Mapping[str, Any] | None = None, **overrides: Any) -> "RunConfig":
        chosen = get_preset(preset)
        config = cls(aligner=aligner, benchmark=benchmark, preset=preset, **overrides)
        if config.n_seeds is None:
            config.n_seeds = chosen.n_seeds
        config.aligner_options = as_dict(aligner_options(aligner, preset, options))
        config.benchmark_options = as_dict(benchmark_options(benchmark, preset, eval_options))
        return config
