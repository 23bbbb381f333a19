"""Bad input gets a clear message (issue 12): one row per bad input, run through ``python -m probekit``.

Each case writes its files into a fresh folder, runs the command there and checks the exit
code (2 bad input, 1 expectation failed, 3 run failure, 130 interrupted: probekit/errors.py),
that every phrase is in what it printed, that no ``absent`` phrase is (a false second problem),
and that nothing printed a traceback. ``{tiny_a}``, ``{tiny_b}`` and ``{eval}`` in a file's
text are the module's tiny model folders and data file. Validation cases use ``check``; only
problems that validation cannot see without reading the data use ``run``.
"""
from __future__ import annotations

import codecs
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from probekit.results.io import read_table
from probekit.results.schema import build_table
from probekit.testing.fixtures import save_tiny_model, write_tiny_csv


@dataclass(frozen=True)
class Case:
    name: str
    files: dict[str, str | bytes]
    argv: list[str]
    exit_code: int
    phrases: tuple[str, ...]
    absent: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()  # extra environment variables; {cwd} is the case's folder
    kept: tuple[str, ...] = ()  # files the run must leave behind, whole (what was computed is not lost)
    gone: tuple[str, ...] = ()  # globs that must match nothing afterwards (partial files)


SPEC = """
name = "bad"
[run]
batch_size = 8
max_length = 16
[models.a]
id = "{tiny_a}"
[models.b]
id = "{tiny_b}"
[data.eval]
path = "{eval}"
[metrics.svcca]
[[comparisons]]
a = "a"
b = "b"
data = "eval"
"""

FINETUNE = SPEC.replace('[models.b]\nid = "{tiny_b}"', '[models.b]\nbase = "a"\ntrain = "eval"\nepochs = 1')


def spec(*replacements: tuple[str, str], text: str = SPEC) -> str:
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    return text


def data(path: str) -> str:
    """The spec probing the data file ``path`` (written by the case)."""
    return spec(('path = "{eval}"', f'path = "{path}"'))


def plugin(body: str) -> str:
    return "import probekit\n\n@probekit.hookimpl\n" + body


def parquet(table: pa.Table) -> bytes:
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    return buffer.getvalue().to_pybytes()


RESULTS = parquet(build_table([], {"run_id": "r", "spec_name": "bad"}))  # a results file as a run writes it
FOOTER = int.from_bytes(RESULTS[-8:-4], "little")  # Parquet ends in the footer, its length and the magic
CORRUPTED = RESULTS[:-8 - FOOTER] + bytes(FOOTER) + RESULTS[-8:]  # the footer zeroed, its length and magic kept
FOREIGN = parquet(pa.table({"x": [1, 2]}))  # a Parquet file probekit did not write
DUPLICATE_METRIC = ("from probekit.plugins.svcca import SVCCA\n\nclass Again(SVCCA):\n    pass\n\n"
                    + plugin("def probekit_register_metrics(register):\n    register(Again)\n"))

BROKEN_TORCHVISION = {  # a torchvision built for another torch: transformers' imports fail inside it
    "fake/torchvision/__init__.py": 'raise RuntimeError("operator torchvision::nms does not exist")\n',
    "fake/torchvision-0.99.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: torchvision\nVersion: 0.99.0\n",
}
LONG_TEXTS = "\n".join(" ".join(["the cat sat on the mat"] * 40) for _ in range(12)) + "\n"


def full_disk(patch: str) -> str:
    """A spec plugin that makes one kind of write fail with ENOSPC (after writing a few bytes, as a full disk
    does), deterministically: ``patch`` replaces the writer, calling ``fail(path)`` where the disk is full."""
    return ("import errno\nimport os\n\nimport probekit\n\n\ndef fail(path):\n"
            "    with open(path, 'wb') as handle:\n        handle.write(b'PK')\n"
            "    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))\n\n\n" + patch
            + "\n\n@probekit.hookimpl\ndef probekit_run_finished(run, console):\n    pass\n")


FULL_FIGURES = full_disk("from matplotlib.figure import Figure\n\nFigure.savefig = lambda self, path, **kw: fail(path)")
FULL_RUN_FOLDER = full_disk("import pyarrow.parquet as pq\n\nwrite = pq.write_table\n\n\n"
                            "def write_unless_run_folder(table, path, *args, **kwargs):\n"
                            "    if os.sep + 'out' + os.sep in os.path.abspath(path):\n        fail(path)\n"
                            "    return write(table, path, *args, **kwargs)\n\n\npq.write_table = write_unless_run_folder")
FULL_CACHE = full_disk("import transformers\n\n"
                       "transformers.PreTrainedModel.save_pretrained = lambda self, path, **kw: fail(os.path.join(path, 'model.safetensors'))")
WITH_PLUGIN = ('name = "bad"', 'name = "bad"\nplugins = ["disk.py"]')


def model(folder: str) -> str:
    """The spec comparing the tiny model ``a`` with the model folder ``folder`` (an asset placeholder)."""
    return spec(('id = "{tiny_b}"', f'id = "{folder}"'))


CASES = [
    # -- model folders that would run code or measure a random model (issue 22) ----------------------
    Case("pickle_only_model_folder", {"s.toml": model("{pickle}")}, ["run", "s.toml", "-o", "out"], 2,
         ("models.b: cannot load", "its weights are a pickle that holds more than tensors",
          "loads only safetensors or weights-only checkpoints", "unpickling runs whatever code",
          "convert it once to safetensors"), absent=("weights_only=True", "UnpicklingError")),
    Case("config_width_differs_from_weights", {"s.toml": model("{wide}")}, ["run", "s.toml", "-o", "out"], 2,
         ("models.b:", "wide: config.json does not match the weights", "[32] in the weights, [64] by config.json")),
    Case("bert_config_over_gpt2_weights", {"s.toml": model("{mixed}")}, ["run", "s.toml", "-o", "out"], 2,
         ("models.b:", "mixed: the weights lack embeddings.LayerNorm.bias", "initialise them at random")),
    Case("remote_code_folder", {"s.toml": model("{remote}")}, ["run", "s.toml", "-o", "out"], 2,
         ("models.b:", "remote: config.json has an `auto_map` to custom code",
          "probekit never runs code from a model folder"), absent=("[y/N]",)),
    Case("model_stack_import_fails", {"s.toml": SPEC, **BROKEN_TORCHVISION}, ["run", "s.toml", "-o", "out"], 2,
         ("the model stack (torch, transformers) cannot be imported: torchvision fails to import",
          "operator torchvision::nms does not exist", "pip install --force-reinstall torchvision"),
         env=(("PYTHONPATH", "{cwd}/fake"),)),
    # -- a full disk or a folder that cannot be written: the environment, not a bug (exit 2, no partial file) -----
    Case("full_disk_while_drawing_figures", {"s.toml": spec(WITH_PLUGIN), "disk.py": FULL_FIGURES},
         ["run", "s.toml", "-o", "out"], 2,
         ("could not write a file of the report", "out/svcca.png: it needs space: the disk is full there",
          "the results are kept in out/results.parquet"), absent=("plugin bug",),
         kept=("out/results.parquet",), gone=("out/*.png", "out/.*.tmp")),
    Case("full_disk_while_writing_results", {"s.toml": spec(WITH_PLUGIN), "disk.py": FULL_RUN_FOLDER},
         ["run", "s.toml", "-o", "out"], 2,
         ("could not write the results", "out/results.parquet: it needs space", "the results are saved in",
          "unsaved"), absent=("plugin bug",), gone=("out/results.parquet", "out/.*.tmp"),
         env=(("PROBEKIT_CACHE", "{cwd}/cache"),)),
    Case("full_disk_while_saving_a_fine_tune", {"s.toml": spec(WITH_PLUGIN, text=FINETUNE), "disk.py": FULL_CACHE},
         ["run", "s.toml", "-o", "out"], 2,
         ("could not write a fine-tune into the checkpoint cache", "cache/finetunes: it needs space: the disk is full"),
         absent=("plugin bug",), gone=("cache/finetunes/*partial*", "cache/finetunes/*/"),
         env=(("PROBEKIT_CACHE", "{cwd}/cache"),)),
    Case("diff_of_two_specs_runs",
         {"a.parquet": parquet(build_table([], {"run_id": "ra", "spec_name": "alpha"})),
          "b.parquet": parquet(build_table([], {"run_id": "rb", "spec_name": "beta"}))},
         ["diff", "a.parquet", "b.parquet"], 2,
         ("A and B are runs of two different specs: A of 'alpha', B of 'beta'",
          "the two runs have no comparison and metric in common")),
    # -- messages that pointed the wrong way (issue 22) ---------------------------------------------------------
    Case("txt_of_blank_lines", {"s.toml": data("d.txt"), "d.txt": "\n   \n\n"}, ["run", "s.toml", "-o", "out"], 2,
         ("d.txt): has no rows: the file holds only blank lines",), absent=("header",)),
    Case("cache_folder_that_does_not_exist", {}, ["cache", "ls", "--cache", "nope"], 2,
         ("--cache nope: no such folder",), absent=("is empty",)),
    Case("lora_rank_above_the_layer_width",
         {"s.toml": spec(("epochs = 1", 'epochs = 1\nmethod = "lora"\nrank = 512'), text=FINETUNE)},
         ["run", "s.toml", "-o", "out"], 2,
         ("models.b.rank: found 512, above the width of the layers it adapts", "set rank to at most 32")),
    Case("corrupt_trainer_state",
         {"s.toml": spec(('[models.b]\nid = "{tiny_b}"', '[models.b]\ncheckpoints = "ck/run-*"')),
          "ck/run-a/config.json": "{}", "ck/run-a/model.safetensors": b"x", "ck/run-a/trainer_state.json": "{not json"},
         ["check", "s.toml"], 2, ("trainer_state.json is corrupt: not readable JSON",), absent=("nor holds",)),
    # -- max_length above a model's position limit: clamped, with a warning (docs/specs.md) -------------
    Case("max_length_above_the_encoders_positions",
         {"s.toml": spec(("max_length = 16", "max_length = 1024"), ('path = "{eval}"', 'path = "long.txt"')),
          "long.txt": LONG_TEXTS},
         ["run", "s.toml", "-o", "out"], 0,
         ("run.max_length: 1024, more tokens than models.a can read (its config.json (bert) allows 64 positions)",
          "texts are cut at 64 tokens", "results: out/results.parquet"), kept=("out/results.parquet",)),
    Case("max_length_above_the_decoders_positions",
         {"s.toml": spec(("max_length = 16", "max_length = 128"), ('path = "{eval}"', 'path = "long.txt"'),
                         ('id = "{tiny_a}"', 'id = "{decoder}"'), ('id = "{tiny_b}"', 'id = "{decoder}"')),
          "long.txt": LONG_TEXTS},
         ["run", "s.toml", "-o", "out"], 0,
         ("run.max_length: 128, more tokens than models.a can read (its config.json (gpt2) allows 32 positions)",
          "results: out/results.parquet"), kept=("out/results.parquet",)),
    Case("max_length_warned_at_check", {"s.toml": spec(("max_length = 16", "max_length = 1024"))}, ["check", "s.toml"],
         0, ("run.max_length: 1024, more tokens than models.b can read", "s.toml: ok")),
    # -- silent wrong results -------------------------------------------------------------------
    Case("lr_zero", {"s.toml": spec(("epochs = 1", "epochs = 1\nlr = 0"), text=FINETUNE)}, ["check", "s.toml"], 2,
         ("models.b.lr: found 0; expected a positive learning rate",)),
    Case("lr_negative", {"s.toml": spec(("[run]", "[finetune]\nlr = -1e-5\n[run]"), text=FINETUNE)}, ["check", "s.toml"], 2,
         ("finetune.lr: found -1e-05; expected a positive learning rate",), absent=("models.b.lr",)),
    Case("empty_label_in_training_data",
         {"s.toml": spec(('train = "eval"', 'train = "train"'), ("[data.eval]", '[data.train]\npath = "train.csv"\n[data.eval]'),
                         text=FINETUNE),
          "train.csv": "text,label\nthe cat sat,0\nthe dog ran,\nthe bird sang,1\n"},
         ["run", "s.toml", "-o", "out"], 2,
         ("data.train", "train.csv): line 3: column 'label' is empty", "every example needs its text and a label")),
    # -- tracebacks instead of messages ------------------------------------------------------------
    Case("spec_latin1", {"s.toml": ("# café\n" + SPEC).encode("latin-1")}, ["check", "s.toml"], 2,
         ("s.toml: 1 problem", "not UTF-8 (byte 0xe9 at line 1, column 6", "save the spec as UTF-8")),
    Case("spec_utf16", {"s.toml": SPEC.encode("utf-16")}, ["check", "s.toml"], 2,
         ("s.toml: 1 problem", "found a UTF-16 file; expected UTF-8 text",)),
    Case("spec_binary", {"s.toml": bytes(range(256)) * 4}, ["check", "s.toml"], 2,
         ("s.toml: 1 problem", "found a binary file",)),
    Case("spec_utf8_bom_is_accepted", {"s.toml": codecs.BOM_UTF8 + SPEC.encode()}, ["check", "s.toml"], 0,
         ("s.toml: ok",)),
    Case("report_truncated", {"r.parquet": RESULTS[: len(RESULTS) // 2]}, ["report", "r.parquet"], 2,
         ("r.parquet: not a readable Parquet file, truncated or corrupted", "expected the results.parquet of a probekit run")),
    Case("report_corrupted", {"r.parquet": CORRUPTED}, ["report", "r.parquet"], 2,
         ("r.parquet: not a readable Parquet file, truncated or corrupted",)),
    Case("report_zero_bytes", {"r.parquet": b""}, ["report", "r.parquet"], 2, ("r.parquet: an empty file (0 bytes)",)),
    Case("report_foreign_parquet", {"r.parquet": FOREIGN}, ["report", "r.parquet"], 2,
         ("r.parquet: a Parquet file probekit did not write (no probekit metadata", "its columns are: x")),
    Case("report_of_a_spec", {"s.toml": SPEC}, ["report", "s.toml"], 2,
         ("s.toml: a spec, not results", "`probekit run s.toml` writes one")),
    Case("empty_plugin_name", {"s.toml": SPEC}, ["check", "-p", "", "s.toml"], 2,
         ("-p '': an empty plugin name", "no:NAME"), absent=("s.toml: 1 problem",)),
    # -- unclear messages ---------------------------------------------------------------------------
    Case("model_id_is_a_file", {"s.toml": spec(('id = "{tiny_b}"', 'id = "./weights.bin"')), "weights.bin": b"x"},
         ["check", "s.toml"], 2, ("models.b.id: found './weights.bin'", "weights.bin is a file, not a folder")),
    Case("empty_model_folder", {"s.toml": spec(('id = "{tiny_b}"', 'id = "./empty"')), "empty/.keep": ""},
         ["check", "s.toml"], 2, ("models.b.id: found './empty'", "has no config.json")),
    Case("model_folder_without_weights", {"s.toml": spec(('id = "{tiny_b}"', 'id = "./m"')), "m/config.json": "{}"},
         ["check", "s.toml"], 2, ("models.b.id", "has config.json but no weights")),
    Case("data_path_is_a_folder", {"s.toml": data("d.csv"), "d.csv/x": ""}, ["check", "s.toml"], 2,
         ("data.eval.path: found 'd.csv'", "d.csv is a folder, not a file")),
    Case("data_file_of_zero_bytes", {"s.toml": data("d.csv"), "d.csv": ""}, ["check", "s.toml"], 2,
         ("data.eval.path: found 'd.csv'", "is empty: 0 bytes")),
    Case("data_file_with_only_a_header", {"s.toml": data("d.csv"), "d.csv": "text,label\n"}, ["run", "s.toml", "-o", "out"], 2,
         ("d.csv): has no rows: the file holds only a header (text, label)",), absent=("the columns are",)),
    Case("data_file_not_utf8", {"s.toml": data("d.csv"), "d.csv": "text,label\nthe cat,0\ncafé au lait,1\n".encode("latin-1")},
         ["run", "s.toml", "-o", "out"], 2, ("d.csv): line 3: byte 0xe9 is not UTF-8 text", "save the file as UTF-8")),
    Case("broken_jsonl_line",
         {"s.toml": data("d.jsonl"), "d.jsonl": '{"text": "a", "label": 0}\n\n{"text": "b", "label": 1}\n{"text": "c", label: 1}\n'},
         ["run", "s.toml", "-o", "out"], 2, ("d.jsonl): line 4, column 15: invalid JSON",)),
    Case("spreadsheet_data_file", {"s.toml": data("d.xlsx"), "d.xlsx": "the cat sat\n"}, ["check", "s.toml"], 2,
         ("data.eval.path: found 'd.xlsx'; expected a file ending in .csv, .tsv, .jsonl, .json, .parquet, .txt",)),
    Case("task_and_path_in_one_table", {"s.toml": spec(('path = "{eval}"', 'path = "{eval}"\ntask = "nli"'))},
         ["check", "s.toml"], 2, ("data.eval: found several: task, path; expected exactly one source key",),
         absent=("unknown key", "2 problems")),
    Case("plugin_registers_an_existing_metric_name",
         {"s.toml": spec(('name = "bad"', 'name = "bad"\nplugins = ["again.py"]')), "again.py": DUPLICATE_METRIC},
         ["check", "s.toml"], 2, ("metric 'svcca' is registered by two plugins: 'svcca' and 'again.py'", "another `name`"),
         absent=("found no metrics", "importable")),
    Case("blocked_plugin_the_spec_uses", {"s.toml": SPEC}, ["check", "-p", "no:svcca", "s.toml"], 2,
         ("metrics.svcca: found the metric 'svcca', which no plugin provides", "-p no:svcca blocks the plugin 'svcca'"),
         absent=("found no metrics",)),
    Case("block_with_a_typo", {"s.toml": SPEC}, ["check", "-p", "no:svccca", "s.toml"], 0,
         ("-p no:svccca blocks no plugin; did you mean 'svcca'?", "s.toml: ok")),
    Case("hook_name_typo", {"s.toml": SPEC, "typo.py": plugin("def probekit_register_metric(register):\n    pass\n")},
         ["check", "-p", "typo.py", "s.toml"], 2,
         ("unknown hook 'probekit_register_metric'; did you mean 'probekit_register_metrics'?",), absent=("<module",)),
    Case("hook_argument_typo", {"s.toml": SPEC, "sig.py": plugin("def probekit_run_finished(run, consol):\n    pass\n")},
         ["check", "-p", "sig.py", "s.toml"], 2,
         ("probekit_run_finished(run, consol) takes 'consol', which the hook does not offer",
          "probekit_run_finished offers: run, console", "did you mean 'console'?")),
    Case("verbose_after_the_subcommand", {"s.toml": SPEC}, ["check", "--verbose", "s.toml"], 0, ("s.toml: ok",)),
    Case("negative_mix_count", {"s.toml": spec(("[metrics.svcca]", "[data.m]\nmix = { eval = -3 }\n[metrics.svcca]"))},
         ["check", "s.toml"], 2, ("data.m.mix.eval: found -3", "counts must be positive")),
    # -- declarations checked whole (issue 22): names that become paths, settings that cannot hold ------------
    Case("name_climbs_out_of_reports", {"s.toml": spec(('name = "bad"', 'name = "../../x"'))}, ["check", "s.toml"], 2,
         ("name: found '../../x'", "letters, digits, '_', '-' and '.'", "names the run folder under reports/")),
    Case("name_is_an_absolute_path", {"s.toml": spec(('name = "bad"', 'name = "/tmp/x"'))}, ["run", "s.toml"], 2,
         ("name: found '/tmp/x'", "not starting with '.'"), absent=("results:",)),
    Case("bootstrap_groups_above_the_examples",
         {"s.toml": spec(("max_length = 16", "max_length = 16\nbootstrap = 20\nbootstrap_groups = 1000"),
                         ('path = "{eval}"', 'path = "{eval}"\nlimit = 64'))}, ["check", "s.toml"], 2,
         ("run.bootstrap_groups: found 1000, more groups than the 64 examples data.eval declares",)),
    Case("permutations_negative", {"s.toml": spec(("[metrics.svcca]", "[metrics.svcca]\npermutations = -5"))},
         ["check", "s.toml"], 2, ("metrics.svcca.permutations: found -5", "or 0 for none")),
    Case("permutations_zero_is_none", {"s.toml": spec(("[metrics.svcca]", "[metrics.svcca]\npermutations = 0"))},
         ["check", "s.toml"], 0, ("s.toml: ok",)),
    Case("share_band_that_cannot_hold",
         {"s.toml": spec(("[[comparisons]]", '[[comparisons]]\nname = "ab"\na = "a"\nb = "b"\ndata = "eval"\n[[comparisons]]'))
          + '[[expect]]\ncomparison = "a_vs_b"\nmetric = "svcca"\nshare_of = "ab"\nat_least = 0.9\nat_most = 0.1\n'},
         ["check", "s.toml"], 2, ("expect[0].at_least: found 0.9; expected a band that some value can meet",)),
    Case("learned_on_an_lm_fine_tune",
         {"s.toml": spec(("epochs = 1", 'epochs = 1\nobjective = "lm"'), text=FINETUNE) + '[[expect]]\nlearned = "b"\n'},
         ["check", "s.toml"], 2, ("expect[0].learned: found 'b'; expected a classification fine-tune",
                                  "no labels, so no majority-class rate"), absent=("older probekit",)),
    Case("ray_keys_with_the_local_executor",
         {"s.toml": spec(("max_length = 16", 'max_length = 16\nray_address = "auto"'))}, ["check", "s.toml"], 0,
         ("s.toml: ok", "note s.toml: [run] ray_address: read by the Ray executor only; this spec runs locally")),
    Case("resume_with_fresh", {"s.toml": SPEC, "run/x": ""}, ["run", "--resume", "run", "--fresh"], 2,
         ("--resume run --fresh: a resumed run keeps the comparisons it finished", "without --resume")),
    Case("set_a_bad_value", {"s.toml": FINETUNE}, ["check", "s.toml", "--set", "finetune.lr=-1"], 2,
         ("--set finetune.lr: found -1; expected a positive learning rate",)),
    Case("set_without_a_value", {"s.toml": SPEC}, ["check", "s.toml", "--set", "finetune.lr"], 2,
         ("--set 'finetune.lr': expected KEY=VALUE",)),
    Case("set_an_unknown_key", {"s.toml": SPEC}, ["check", "s.toml", "--set", "run.batch_sise=4"], 2,
         ("--set run.batch_sise: found an unknown key", "did you mean 'batch_size'?")),
    Case("include_missing", {"s.toml": 'include = "shared/none.toml"\n' + SPEC}, ["check", "s.toml"], 2,
         ("include: found 'shared/none.toml'; expected an existing TOML file",)),
    # -- work lost or overwritten (the rest of these cases, which need a signal or a damaged
    # cache, are in tests/integration/test_outputs_and_cache.py)
    Case("output_folder_holds_other_files", {"s.toml": SPEC, "out/notes.txt": "mine"},
         ["run", "s.toml", "-o", "out"], 2, ("-o out: the folder is not empty", "notes.txt", "--overwrite")),
    Case("output_is_a_file", {"s.toml": SPEC, "out": "a file"},
         ["run", "s.toml", "-o", "out"], 2, ("-o out: is a file, not a folder",)),
    Case("probe_on_data_with_one_label",
         {"s.toml": data("one.csv").replace("[metrics.svcca]", "[metrics.linear_probe]\nc = 1.0"),
          "one.csv": "text,label\n" + "".join(f"the cat sat on mat {i},pos\n" for i in range(30))},
         ["run", "s.toml", "-o", "run"], 2,
         ("a_vs_b / linear_probe", "the data has one label: a probe needs at least two classes",
          "probe data with several labels")),
    Case("word_labels_of_sentence_level_data",
         {"s.toml": spec(("[metrics.svcca]", '[metrics.linear_probe]\nlabels = "word"'))},
         ["run", "s.toml", "-o", "run"], 2,
         ("a_vs_b / linear_probe", "labels = 'word' needs token-level data", "word_tags = true")),
    Case("conllu_file_with_a_malformed_line",
         {"s.toml": spec(('path = "{eval}"', 'conllu = "ud.conllu"')),
          "ud.conllu": "# sent_id = 1\n1\tthe\tthe\tDET\tDT\t_\t2\tdet\t_\t_\n2\tcat\tcat\tNOUN\n"},
         ["run", "s.toml", "-o", "run"], 2, ("data.eval", "ud.conllu", "line 3: found 4 tab-separated fields, expected 10")),
    Case("metric_plugin_raises_keyerror_in_update",
         {"s.toml": "plugins = [\"buggy.py\"]\n" + spec(("[metrics.svcca]", "[metrics.svcca]\n[metrics.buggy]")),
          "buggy.py": "import probekit\n\nclass Buggy(probekit.Metric):\n    name = 'buggy'\n"
                      "    needs = frozenset({'hidden_states'})\n\n    def update(self, a, b, batch):\n"
                      "        raise KeyError('oops')\n\n    def finalize(self):\n        return []\n\n"
                      "@probekit.hookimpl\ndef probekit_register_metrics(register):\n    register(Buggy)\n"},
         ["run", "s.toml", "-o", "run"], 3, ("a_vs_b / buggy: plugin bug: KeyError", "results: run/results.parquet")),
]


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, str]:
    """The tiny models and data file every case's spec names, built once."""
    root = tmp_path_factory.mktemp("bad_input_assets")
    return {"{tiny_a}": str(save_tiny_model(root / "tiny_a", seed=0)),
            "{tiny_b}": str(save_tiny_model(root / "tiny_b", seed=1)),
            "{eval}": str(write_tiny_csv(root / "eval.csv", 40)),
            **broken_model_folders(root)}


def broken_model_folders(root: Path) -> dict[str, str]:
    """Model folders that must not load: pickled weights holding an object, a config.json of another width,
    a BERT config.json over GPT-2 weights, a config.json mapping to custom code; and a tiny GPT-2 of 32 positions."""
    import argparse
    import shutil

    import torch
    from transformers import BertModel, GPT2Config, GPT2Model

    from probekit.testing.fixtures import tiny_tokenizer

    base = save_tiny_model(root / "base", seed=2)
    folders = {name: root / name for name in ("pickle", "wide", "mixed", "remote")}
    for folder in folders.values():
        shutil.copytree(base, folder)
    weights = BertModel.from_pretrained(base).state_dict()
    (folders["pickle"] / "model.safetensors").unlink()
    torch.save({**weights, "args": argparse.Namespace(lr=1e-3)}, folders["pickle"] / "pytorch_model.bin")
    _edit_config(folders["wide"], hidden_size=64, intermediate_size=128)
    gpt2 = GPT2Model(GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=32, vocab_size=80))
    gpt2.save_pretrained(root / "decoder")
    tiny_tokenizer().save_pretrained(root / "decoder")
    shutil.copy(root / "decoder" / "model.safetensors", folders["mixed"] / "model.safetensors")
    _edit_config(folders["remote"], auto_map={"AutoModel": "modeling_evil.EvilModel"})
    (folders["remote"] / "modeling_evil.py").write_text("raise SystemExit('custom code ran')\n")
    return {**{f"{{{name}}}": str(folder) for name, folder in folders.items()}, "{decoder}": str(root / "decoder")}


def _edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))


def _fill(content: str | bytes, assets: dict[str, str]) -> bytes:
    raw = content.encode() if isinstance(content, str) else content
    for placeholder, value in assets.items():
        raw = raw.replace(placeholder.encode(), value.encode())
    return raw


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input(case: Case, assets, tmp_path):
    for name, content in case.files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(_fill(content, assets))
    env = {**os.environ, "COLUMNS": "200", "HF_HUB_OFFLINE": "1", "PROBEKIT_DISABLE_PLUGIN_AUTOLOAD": "1",
           "OMP_NUM_THREADS": "1", **{name: value.format(cwd=tmp_path) for name, value in case.env}}
    result = subprocess.run([sys.executable, "-m", "probekit", *case.argv], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    printed = result.stdout + result.stderr
    assert result.returncode == case.exit_code, printed
    flat = " ".join(printed.split())  # a long message wraps at 200 columns
    for phrase in case.phrases:
        assert " ".join(phrase.split()) in flat, f"{phrase!r} not in:\n{printed}"
    for phrase in case.absent:
        assert phrase not in flat, f"{phrase!r} in:\n{printed}"
    assert "Traceback" not in printed and "internal error" not in printed, printed
    for name in case.kept:
        assert read_table(tmp_path / name).num_rows > 0, name
    for pattern in case.gone:
        assert not list(tmp_path.glob(pattern)), (pattern, list(tmp_path.glob(pattern)))


def test_every_case_has_a_unique_name():
    assert len({case.name for case in CASES}) == len(CASES)
