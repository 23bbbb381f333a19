"""Fine-tuning the models a spec declares, with a content-addressed checkpoint cache.

The recipe is the paper's (Table 1): a sequence-classification head on the base,
Adam(W), the slanted triangular learning-rate schedule (Howard & Ruder, 2018),
dropout 0.1; every weight trains, or (``method = "lora"``) LoRA adapters and the head
do, merged into the checkpoint. ``objective = "lm"`` trains a decoder on its own task
instead: next-token prediction on the training texts, with its pre-trained LM head. A
checkpoint is keyed by everything that determines it, so a second run (or another spec
asking for the same fine-tune) reuses it. A declared
base + adapter is merged into a cache entry the same way. Processes sharing a
cache train each fine-tune once: the one that trains holds its lock, the others wait
for it and then take the checkpoint from the cache.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import math
import os
import shutil
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import FileLock, Timeout

from probekit.data.batching import make_batches
from probekit.data.example import Example, label_names
from probekit.errors import DataError, ModelError, RunFailure, UserError, write_failure
from probekit.metrics.probing import majority_share
from probekit.metrics.tensors import Batch
from probekit.models.adapters import (UNCHANGED, adapter_identity, load_merged, merge, merged_copy, warn_unchanged,
                                      with_lora)
from probekit.models.configs import position_limit
from probekit.models.families import FAMILIES, Family, model_inputs
from probekit.models.loading import CLASSIFIER_HEADS, from_pretrained, load_tokenizer, load_weights
from probekit.models.manifest import (CacheWarning, entry_problem, move_aside, owner_id, partial_name,
                                      remove_stale_partials, touch_last_used, write_manifest)
from probekit.models.settings import DROPOUT_NAMES, LORA_KEYS, FinetuneSettings

#: Bump when a change to this module changes the weights it produces.
TRAINER_VERSION = "1"
#: The cache's folder of training locks, one file per fine-tune key (apart from finetunes/, which holds entries).
LOCKS = "locks"
#: How long a fine-tune waits for another process training the same one (seconds; $PROBEKIT_LOCK_TIMEOUT):
#: longer than any fine-tune should take, short enough that a wedged owner does not hang a job forever.
LOCK_TIMEOUT = 6 * 3600.0
@dataclass(frozen=True)
class FinetuneJob:
    description: str  # e.g. "models.seed1", for messages
    base_source: str  # what from_pretrained takes: a hub id or a folder
    base_identity: str
    train: Sequence[Example]
    validation: Sequence[Example]
    settings: FinetuneSettings
    precision: str = "float32"  # "bf16-autocast" on a GPU with bfloat16 (see training_precision)

    @property
    def labels(self) -> tuple:
        return label_names(self.train)

    def key(self) -> str:
        settings = dataclasses.asdict(self.settings)
        lora = self.settings.method == "lora"
        if not lora:
            for name in ("method", *LORA_KEYS):
                del settings[name]
        if self.settings.objective == "classification":
            del settings["objective"]
        identity = {
            "trainer": TRAINER_VERSION,
            "base": self.base_identity,
            "train": examples_digest(self.train),
            "validation": examples_digest(self.validation),
            "settings": settings,
            "torch": torch.__version__.split("+")[0],
            # Only GPUs with bf16 train in autocast; float32 training keeps the keys it always had.
            **({"precision": self.precision} if self.precision != "float32" else {}),
            **({"peft": importlib.metadata.version("peft")} if lora else {}),  # it initialises the adapters
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class AdapterJob:
    """A declared base + LoRA adapter (``[models.x] id`` + ``adapter``), merged once into a cache entry."""

    description: str  # e.g. "models.lora", for messages
    base_source: str  # what from_pretrained takes: a hub id or a folder
    base_identity: str
    adapter: str  # a peft adapter folder or hub id
    revision: str | None = None  # of a hub base

    def key(self) -> str:
        identity = {
            "trainer": TRAINER_VERSION,
            "base": self.base_identity,
            "adapter": adapter_identity(self.adapter),
            "peft": importlib.metadata.version("peft"),
            "torch": torch.__version__.split("+")[0],
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Checkpoint:
    """A cached fine-tune: the final model and the snapshots taken during training."""

    folder: Path
    accuracy: float | None
    snapshots: dict[float, Path]
    snapshot_accuracy: dict[float, float | None]
    identity: str
    majority: float | None = None  # the majority-class rate of the validation data: what always guessing it scores
    chance: float | None = None  # 1 / the number of classes
    #: What its comparisons should be read with, e.g. a LoRA that left every weight as it was (adapters.UNCHANGED).
    warnings: tuple[str, ...] = ()
    total_steps: int | None = None  # the optimizer steps of the fine-tune (None for a merged adapter)

    def snapshot_step(self, fraction: float) -> int | None:
        """The optimizer step at which the snapshot at ``fraction`` of training was taken."""
        return None if self.total_steps is None else max(1, round(fraction * self.total_steps))


def majority_rate(examples: Sequence[Example]) -> float | None:
    """The fraction of ``examples`` that carry their most common label (None when there are none): the probes'
    majority-class rule too (:func:`probekit.metrics.probing.majority_share`)."""
    return majority_share([example.label for example in examples])


def examples_digest(examples: Sequence[Example]) -> str:
    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps([example.text, example.text_pair, example.label]).encode())
    return digest.hexdigest()[:16]


def slanted_triangular(step: int, total_steps: int, cut_frac: float, ratio: float) -> float:
    """Learning-rate multiplier at ``step`` (0-based): a linear rise over the first
    ``cut_frac`` of the steps to 1, then a linear decay back to ``1 / ratio``."""
    cut = max(1, math.floor(total_steps * cut_frac))
    if step < cut:
        progress = step / cut
    else:
        progress = 1 - (step - cut) / max(1, total_steps - cut)
    return (1 + progress * (ratio - 1)) / ratio


def cached_checkpoint(job: FinetuneJob | AdapterJob, root: Path) -> Checkpoint | None:
    """The cached fine-tune of ``job``, checked against its manifest; None when there is none.

    An entry that does not match its manifest (or, written before manifests, does not
    read) is never used: it is moved aside as ``<key>.corrupt-<timestamp>`` with a
    :class:`CacheWarning` naming both folders, and None is returned so it is trained again.
    """
    folder = root / "finetunes" / job.key()
    if not folder.is_dir():
        return None
    problem = entry_problem(folder)
    if problem is not None:
        try:
            aside = move_aside(folder)
        except OSError as error:
            raise ModelError(f"{job.description}: the cached fine-tune {folder} is corrupt ({problem}) and could not be "
                             f"moved aside ({error.strerror or error}); delete that folder and run again") from None
        warnings.warn(f"{job.description}: the cached fine-tune {folder} is corrupt ({problem}); moved it aside to "
                      f"{aside} and training it again", CacheWarning, stacklevel=2)
        return None
    return _load(job, folder)


def _sound_checkpoint(job: FinetuneJob | AdapterJob, root: Path) -> Checkpoint | None:
    """The cached fine-tune of ``job`` if it matches its manifest, else None. A corrupt entry is left for
    :func:`cached_checkpoint` to move aside under the lock, so two processes never both move it."""
    folder = root / "finetunes" / job.key()
    if folder.is_dir() and entry_problem(folder) is None:
        return _load(job, folder)
    return None


def _load(job: FinetuneJob | AdapterJob, folder: Path) -> Checkpoint:
    touch_last_used(folder, job.description)
    meta = json.loads((folder / "meta.json").read_text())
    snapshots = {float(f): folder / "snapshots" / f for f in meta["snapshot_accuracy"]}
    if meta.get("unchanged"):  # on every run that uses it, cached or not: its comparisons will all be 0
        warn_unchanged(job.description)
    trained = isinstance(job, FinetuneJob)  # a merged adapter has no validation data
    # Class rates mean nothing for next-token accuracy: a language model guesses among its whole vocabulary.
    classifier = trained and job.settings.objective == "classification"
    return Checkpoint(
        folder=folder / "final",
        accuracy=meta["accuracy"],
        snapshots=snapshots,
        snapshot_accuracy={float(f): a for f, a in meta["snapshot_accuracy"].items()},
        identity=f"{'finetune' if trained else 'adapter'}:{job.key()}",
        majority=majority_rate(job.validation) if classifier else None,
        chance=1 / len(job.labels) if classifier and job.labels else None,
        warnings=(UNCHANGED,) if meta.get("unchanged") else (),
        total_steps=training_steps(job.settings, meta["n_train"]) if trained else None,
    )


def training_steps(settings: FinetuneSettings, n_train: int) -> int:
    """How many optimizer steps a fine-tune of ``n_train`` examples takes."""
    return math.ceil(n_train / settings.batch_size) * settings.epochs


def finetune(
    job: FinetuneJob | AdapterJob,
    root: Path,
    device: torch.device,
    *,
    on_step: Callable[[int, int, float], None] | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> Checkpoint:
    """Train (or reuse) the checkpoint of ``job`` (an AdapterJob: merge it). ``on_step(step, total, loss)``
    reports progress; ``on_wait(status)`` says that another process is training it ("waiting for <pid>@<host>
    to finish training").

    The training holds the lock of the cache entry (:func:`training_lock`), so processes
    sharing the cache train it once: the others wait, then reuse it. The checkpoint is
    written under a temporary name (``<key>.partial-<pid>@<host>``), with a manifest of its
    files, and renamed when complete, so an interrupted run never leaves a half checkpoint
    that a later run would trust; the temporary folder is removed on any exception or
    Ctrl-C, and those of dead processes at the next fine-tune. A cache that cannot be written (a full disk, no
    permission) is an OutputError naming the folder.
    """
    try:
        return _cached_or_trained(job, root, device, on_step, on_wait)
    except OSError as error:
        # named by the cache folder: the partial checkpoint the error names is removed already
        known = write_failure(error, "a fine-tune into the checkpoint cache", root / "finetunes")
        if known is None:
            raise
        raise known from error


def _cached_or_trained(job: FinetuneJob | AdapterJob, root: Path, device: torch.device,
                       on_step: Callable[[int, int, float], None] | None,
                       on_wait: Callable[[str], None] | None) -> Checkpoint:
    existing = _sound_checkpoint(job, root)  # the common case takes no lock: reading needs none
    if existing is not None:
        return existing
    with training_lock(job, root / LOCKS, on_wait):
        existing = cached_checkpoint(job, root)  # trained by the process we waited for, or corrupt: moved aside
        if existing is not None:
            return existing
        remove_stale_partials(root / "finetunes")
        staging = root / "finetunes" / partial_name(job.key())
        try:
            if isinstance(job, AdapterJob):
                _merge(job, root, staging)
            else:
                _train(job, root, device, staging, on_step)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        checkpoint = cached_checkpoint(job, root)
    if checkpoint is None:
        raise ModelError(f"{job.description}: the fine-tune just written to {root / 'finetunes' / job.key()} "
                         "does not match its manifest (is the disk full or failing?)")
    return checkpoint


@contextmanager
def training_lock(job: FinetuneJob | AdapterJob, locks: Path,
                  on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold ``<cache>/locks/<key>.lock`` while training ``job``; wait while another process holds it.

    It is an OS lock (flock, or its Windows counterpart, through ``filelock``): the kernel
    releases it when its process dies, even by SIGKILL, so a dead owner never blocks the
    next process. The owner's ``<pid>@<host>`` is written beside it (``<key>.owner``: the
    lock file itself is the lock library's) for the waiters' messages. Waiting longer than
    :func:`lock_timeout` is a RunFailure naming the lock and its owner.
    """
    timeout = lock_timeout()  # a bad setting is reported before any wait
    locks.mkdir(parents=True, exist_ok=True)
    path = locks / f"{job.key()}.lock"
    owner_file = path.with_suffix(".owner")
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait is not None:
            on_wait(f"waiting for {_owner(owner_file)} to finish training")
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise RunFailure(f"{job.description}: waited {timeout:g} s for {_owner(owner_file)} to finish training "
                             f"this fine-tune (lock {path}); it still holds the lock. Set PROBEKIT_LOCK_TIMEOUT "
                             f"(seconds) to wait longer, or stop that process") from None
    try:
        owner_file.write_text(owner_id() + "\n")
        yield
    finally:
        owner_file.unlink(missing_ok=True)
        lock.release()


def _owner(owner_file: Path) -> str:
    """Who holds a training lock, as its owner file names them."""
    try:
        return owner_file.read_text().strip() or "another process"
    except OSError:
        return "another process"


def lock_timeout() -> float:
    """How long to wait for another process's fine-tune: $PROBEKIT_LOCK_TIMEOUT seconds, else :data:`LOCK_TIMEOUT`."""
    text = os.environ.get("PROBEKIT_LOCK_TIMEOUT", "").strip()
    if not text:
        return LOCK_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise UserError(f"PROBEKIT_LOCK_TIMEOUT={text!r}: expected a number of seconds >= 0 (the default "
                        f"{LOCK_TIMEOUT:g} is 6 hours)")
    return seconds


def _train(job: FinetuneJob, root: Path, device: torch.device, staging: Path,
           on_step: Callable[[int, int, float], None] | None) -> None:
    """Train ``job`` into ``staging``, then rename it to its cache folder."""
    from transformers import AutoConfig

    settings = job.settings
    classify = settings.objective == "classification"
    labels = job.labels if classify else None  # a language model's targets are the texts' own tokens
    if classify:
        _check_labels(job)
    config = from_pretrained(AutoConfig, job.base_source, job.description)
    family = _family(job, config.model_type)
    # Texts cut at the base's position limit (Session.load warned): longer ones would crash its forward pass.
    # The cache key keeps the declared max_length: the same declaration trains the same model.
    settings = dataclasses.replace(settings, max_length=min(settings.max_length,
                                                             position_limit(config.to_dict()) or settings.max_length))

    torch.manual_seed(settings.seed)
    tokenizer = load_tokenizer(job.base_source, job.description)
    model = _training_model(job, labels, config).to(device)
    if family.causal:  # a decoder's classifier pools its last token that is not padding: it must know the padding token
        model.config.pad_token_id = tokenizer.pad_token_id
    lora = settings.method == "lora"
    if lora:  # wrapped after the head is initialised: a seed starts either method from the same head
        model = with_lora(model, settings, job.description)

    train = list(job.train) if classify else lm_texts(job.train)
    validation = job.validation if classify else lm_texts(job.validation)

    def validate(model) -> float | None:
        if classify:
            return accuracy(model, tokenizer, validation, labels, settings, device)
        return next_token_accuracy(model, tokenizer, validation, settings, device)

    total_steps = training_steps(settings, len(train))
    snapshot_steps = {max(1, round(f * total_steps)): f for f in settings.snapshots}
    trainable = [p for p in model.parameters() if p.requires_grad]  # under LoRA: the adapters (and a classifier's head)
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: slanted_triangular(step, total_steps, settings.warmup, settings.ratio)
    )
    order = torch.Generator().manual_seed(settings.seed)

    shutil.rmtree(staging, ignore_errors=True)
    snapshot_accuracy: dict[str, float | None] = {}
    step = 0
    for _ in range(settings.epochs):
        shuffled = [train[i] for i in torch.randperm(len(train), generator=order).tolist()]
        for batch in make_batches(shuffled, tokenizer, batch_size=settings.batch_size,
                                  max_length=settings.max_length, labels=labels):
            model.train()
            batch = batch.to(device)
            # On a GPU with bfloat16, forwards run in bf16 autocast; the weights and Adam stay float32.
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=_bf16_autocast(device)):
                if classify:
                    loss = model(**model_inputs(model, batch), labels=batch.labels).loss
                else:
                    loss = next_token_loss(model(**model_inputs(model, batch)).logits, batch)
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if on_step is not None:
                on_step(step, total_steps, loss.item())
            if step in snapshot_steps and snapshot_steps[step] < 1.0:
                fraction = snapshot_steps[step]
                snapshot = merged_copy(model) if lora else model
                _save(snapshot, tokenizer, staging / "snapshots" / f"{fraction:g}")
                snapshot_accuracy[f"{fraction:g}"] = validate(model)

    unchanged = False
    if lora:  # the checkpoint is the merged model, like a full fine-tune's; the adapter is kept for users
        model.save_pretrained(staging / "adapter")
        model, unchanged = merge(model)
    final_accuracy = validate(model)
    _save(model, tokenizer, staging / "final")
    if 1.0 in settings.snapshots:  # the end of training is the final model itself
        snapshot_accuracy["1"] = final_accuracy
        (staging / "snapshots").mkdir(exist_ok=True)
        os.symlink(Path("..") / "final", staging / "snapshots" / "1")
    meta = {
        "description": job.description,
        "base": job.base_identity,
        "objective": settings.objective,
        "settings": dataclasses.asdict(settings),
        "labels": [str(label) for label in labels or ()],
        "n_train": len(train),
        "n_validation": len(job.validation),
        "accuracy": final_accuracy,  # under objective "lm": next-token accuracy (next_token_accuracy)
        "majority": majority_rate(job.validation) if classify else None,
        "chance": 1 / len(labels) if classify else None,
        "train_digest": examples_digest(job.train),
        "validation_digest": examples_digest(job.validation),
        "snapshot_accuracy": snapshot_accuracy,
        "trainer_version": TRAINER_VERSION,
        **({"unchanged": unchanged} if lora else {}),
    }
    _commit(staging, root / "finetunes" / job.key(), meta)


def _check_labels(job: FinetuneJob) -> None:
    """A classifier needs two classes, and validation data of the classes it learns."""
    labels = job.labels
    if not labels:
        raise DataError(f"{job.description}: the training data has no labels (unlabelled text, e.g. a .txt file); a "
                        "classifier needs labelled examples, and objective = \"lm\" trains a decoder on text alone")
    if len(labels) < 2:
        raise DataError(f"{job.description}: the training data has {len(labels)} label value(s); a classifier needs at least 2")
    unseen = {e.label for e in job.validation} - set(labels)
    if unseen:
        raise DataError(f"{job.description}: validation labels {sorted(map(str, unseen))} never occur in the training data")


def _family(job: FinetuneJob, model_type: str) -> Family:
    """The family of ``job``'s base, known before it loads: a ModelError (before any training) when probekit does not
    know it, or when objective "lm" meets an encoder, whose tokens see the tokens after them: it has no next token
    to learn to predict."""
    family = FAMILIES.get(model_type)
    if family is None:
        raise ModelError(f"{job.description}: probekit does not know the model family of the base {job.base_source!r} "
                         f"(config.model_type {model_type!r}), so it can neither fine-tune nor probe it; it knows "
                         f"{', '.join(sorted(FAMILIES))}. To add it, add an entry to FAMILIES in "
                         "probekit/models/families.py")
    if job.settings.objective == "lm" and not family.causal:
        raise ModelError(f"{job.description}.objective: \"lm\" (set there or under [finetune]) trains next-token "
                         f"prediction, which needs a decoder; the base {job.base_source!r} is a {family.name} encoder: "
                         "each token attends to the tokens after it, so there is no next token to predict. Fine-tune "
                         "a decoder (GPT-2, Llama, ...) or use objective = \"classification\"")
    return family


def _training_model(job: FinetuneJob, labels: tuple | None, config) -> torch.nn.Module:
    """The base with a fresh classification head for ``labels``, or (``labels`` None) with its own LM head."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    # The paper's dropout, under BERT's names; transformers passes a name its config lacks to the model's
    # constructor, which fails, so another family (a decoder's are named otherwise) keeps its config's own dropout.
    dropout = {name: job.settings.dropout for name in DROPOUT_NAMES if hasattr(config, name)}
    recipe = dict(
        **dropout,
        # Train in float32 whatever the checkpoint's dtype: transformers 5 loads a half-precision
        # checkpoint as half by default, and Adam on half weights diverges to NaN.
        dtype=torch.float32,
        # A fine-tune of a fine-tune may have another number of classes: a fresh head then.
        ignore_mismatched_sizes=True,
    )
    if labels is None:
        return load_weights(AutoModelForCausalLM, job.base_source, job.description, **recipe)
    return load_weights(
        AutoModelForSequenceClassification,
        job.base_source,
        job.description,
        num_labels=len(labels),
        id2label={i: str(label) for i, label in enumerate(labels)},
        label2id={str(label): i for i, label in enumerate(labels)},
        new=CLASSIFIER_HEADS,
        **recipe,
    )


def lm_texts(examples: Sequence[Example]) -> list[Example]:
    """What a language model trains on: each example's text, a pair's two texts on two lines (labels unused)."""
    return [Example(e.text if e.text_pair is None else f"{e.text}\n{e.text_pair}", None, e.label) for e in examples]


def next_token_targets(batch: Batch) -> torch.Tensor:
    """(batch, tokens - 1): the id of the token after each position, what it is trained to predict; -100 (none)
    where that is padding or an example's first real token (under left padding a padding position precedes it)."""
    first = batch.attention_mask.long().cumsum(-1) == 1
    return batch.input_ids.masked_fill((batch.attention_mask == 0) | first, -100)[:, 1:]


def next_token_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """The mean cross-entropy of the real tokens' next-token predictions (0 for a batch with none: one-token texts)."""
    targets = next_token_targets(batch)
    total = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), targets.flatten(), ignore_index=-100,
                                              reduction="sum")
    return total / max(1, int((targets != -100).sum()))


def _merge(job: AdapterJob, root: Path, staging: Path) -> None:
    """Merge ``job``'s adapter into its base, into ``staging``, then rename it to its cache folder."""
    encoder, unchanged = load_merged(job.base_source, job.adapter, job.description, job.revision)
    shutil.rmtree(staging, ignore_errors=True)
    _save(encoder, load_tokenizer(job.base_source, job.description, job.revision), staging / "final")
    meta = {
        "description": job.description,
        "base": job.base_identity,
        "adapter": adapter_identity(job.adapter),
        "accuracy": None,
        "snapshot_accuracy": {},
        "trainer_version": TRAINER_VERSION,
        "unchanged": unchanged,
    }
    _commit(staging, root / "finetunes" / job.key(), meta)


def _commit(staging: Path, target: Path, meta: dict) -> None:
    """Write ``meta.json`` and the manifest into ``staging``, then rename it to ``target``."""
    (staging / "meta.json").write_text(json.dumps(meta, indent=2))
    write_manifest(staging)
    try:
        os.replace(staging, target)
    except OSError:  # another process finished the same fine-tune first: keep theirs
        shutil.rmtree(staging, ignore_errors=True)


def training_precision(device: torch.device) -> str:
    """How fine-tuning computes on ``device``: bf16 autocast with float32 weights on a GPU that has bf16."""
    return "bf16-autocast" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "float32"


def _bf16_autocast(device: torch.device) -> bool:
    return training_precision(device) == "bf16-autocast"


def _save(model, tokenizer, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


@torch.inference_mode()
def accuracy(model, tokenizer, examples, labels, settings: FinetuneSettings, device) -> float | None:
    """Fraction of ``examples`` classified correctly; None when there are none."""
    if not examples:
        return None
    model.eval()
    correct = 0
    for batch in make_batches(examples, tokenizer, batch_size=64, max_length=settings.max_length, labels=labels):
        batch = batch.to(device)
        predictions = model(**model_inputs(model, batch)).logits.argmax(-1)
        correct += int((predictions == batch.labels).sum())
    return correct / len(examples)


@torch.inference_mode()
def next_token_accuracy(model, tokenizer, examples, settings: FinetuneSettings, device) -> float | None:
    """Fraction of the real tokens of ``examples`` (each after an example's first) that a language model predicts
    (its most likely next token) from the tokens before them; None when there are none."""
    model.eval()
    correct = predicted = 0
    for batch in make_batches(examples, tokenizer, batch_size=64, max_length=settings.max_length):
        batch = batch.to(device)
        targets = next_token_targets(batch)
        guesses = model(**model_inputs(model, batch)).logits[:, :-1].argmax(-1)
        scored = targets != -100
        correct += int((guesses == targets)[scored].sum())
        predicted += int(scored.sum())
    return correct / predicted if predicted else None
